"""The webhook under a slowloris: what 200 half-open connections cost the agent.

A real `pullnix agent` (fake NixOS machine, file:// remote) with its webhook on; each
request is a push event signed with the wrong secret, so the receiver reads, judges
and answers it (401) and no pass runs. Measured: the agent's threads and open files
idle and at their peak while the connections are opened and held, and the median
time of a request answered while idle (the reference) and while they are held; then
how many of the connections the agent still holds `HOLD` seconds after the last was
opened (a server with a header timeout has closed them all).
"""

from __future__ import annotations

import json
import statistics
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from reconciler.core.webhook_events import sign
from tests.support.agentmachine import fake_machine
from tests.support.gitserve import free_port
from tests.support.slowloris import closed_by_peer, half_open, open_files, threads

Row = dict[str, Any]
SECRET = "bench-hook-secret"  # noqa: S105 -- a loopback test server's secret
HOLD = 15.0


def _row(metric: str, ours: float, reference: float | None, target: str, digits: int) -> Row:
    return {
        "metric": metric,
        "pullnix": round(ours, digits),
        "reference": None if reference is None else round(reference, digits),
        "ratio": round(ours / reference, 2) if reference else None,
        "target": target,
    }


def request_seconds(port: int) -> float:
    """One push event signed with the wrong secret, sent and answered (401)."""
    body = json.dumps({"ref": "refs/heads/main", "after": "0" * 40}).encode()
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/hooks/pullnix",
        data=body,
        method="POST",
        headers={"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sign(b'x', body)}"},
    )
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=60):  # noqa: S310 -- http://127.0.0.1
            pass
    except urllib.error.HTTPError as exc:
        if exc.code != 401:
            raise
    return time.perf_counter() - started


def rows(root: Path, runs: int, connections: int = 200) -> list[Row]:
    port = free_port()
    with fake_machine(root) as machine:
        machine.configure(webhook_listen=f"127.0.0.1:{port}", webhook_secret=SECRET)
        pid = machine.start_agent().pid
        machine.wait_idle()
        idle_threads, idle_files = threads(pid), open_files(pid)
        idle = statistics.median(request_seconds(port) for _ in range(runs))
        peak = {"threads": idle_threads, "files": idle_files}

        def sample() -> None:
            peak["threads"] = max(peak["threads"], threads(pid))
            peak["files"] = max(peak["files"], open_files(pid))

        with half_open(port, connections, sample) as socks:
            opened = time.monotonic()
            sample()
            attacked = statistics.median(request_seconds(port) for _ in range(runs))
            sample()
            time.sleep(max(0.0, opened + HOLD - time.monotonic()))
            held = sum(not closed_by_peer(sock) for sock in socks)
    return [
        _row(
            f"agent threads: peak with {connections} half-open webhook connections; "
            "reference: idle",
            peak["threads"],
            idle_threads,
            "bounded (idle + the connection cap)",
            0,
        ),
        _row(
            f"agent open files: peak with {connections} half-open connections; reference: idle",
            peak["files"],
            idle_files,
            "bounded (idle + the connection cap)",
            0,
        ),
        _row(
            f"webhook request answered (ms, median of {runs}) with {connections} "
            "half-open connections held; reference: idle",
            attacked * 1000,
            idle * 1000,
            "answers (report)",
            1,
        ),
        _row(
            f"half-open connections the agent still holds {HOLD:g} s after the last was "
            f"opened (of {connections})",
            held,
            None,
            "0",
            0,
        ),
    ]
