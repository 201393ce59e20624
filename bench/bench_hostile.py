"""Benchmark: the helper under hostile input, and a long crash soak.

Measures, with the real `pullnix-helper` and the real-Nix fixture, what issue
15's tester found unbounded:

- a health check that prints 20 MB on one line and fails: the helper's peak
  RSS (VmHWM) against its own peak after an ordinary failing check, and the
  largest journal.json and the archived operation it leaves;
- 300 idle connections: the helper's threads;
- a state dir that fills up during Verifying (a 64 KiB tmpfs): what the helper
  reports, what its journal says, and whether the next deploy is taken once the
  space is free;
- the crash soak (tests/support/soak.py) for `soak_seconds` (default 600).

Everything is read from /proc and the helper's files, never through an answer
that might not fit a message, so the same script measures an older helper too
(run it with PYTHONPATH pointing at another checkout). `python -m bench.bench_hostile`
prints JSON; `rows()` is the entry point for the combined runner. Not a test.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from tests.support.agentmachine import fake_machine
from tests.support.helperproc import (
    FakeMachine,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.nixfixture import OFFLINE_NIX_CONFIG
from tests.support.soak import run_soak
from tests.support.tmpfs import mounted_tmpfs

FLOOD = 20_000_000


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _check(argv: list[str]) -> dict[str, Any]:
    return {"name": "probe", "timeout": 120, "retries": 0, "interval": 0, "command": {"argv": argv}}


def _until_idle(state: Path, timeout: float) -> int:
    """Poll the journal until no operation is in it; the largest journal.json seen."""
    journal, largest = state / "journal.json", 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = journal.read_bytes()
            largest = max(largest, len(text))
            if json.loads(text)["operation"] is None:
                return largest
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    return largest


def _peak_after(machine: FakeMachine, tmp: Path, argv: list[str]) -> tuple[float, int, int]:
    """Peak RSS (MB), largest journal (bytes), archived operation (bytes) after one apply."""
    machine.reset()
    paths = write_helper_config(tmp, machine.sandbox)
    helper = start_helper(paths)
    try:
        op_id = helper.client.apply(machine.systems["new"], health_checks=[_check(argv)])
        largest = _until_idle(paths.state_dir, 300)
        archived = paths.state_dir / "operations" / f"{op_id}.json"
        size = archived.stat().st_size if archived.exists() else -1
        return _status_kib(helper.pid, "VmHWM") / 1024, largest, size
    finally:
        helper.stop()
        cleanup_socket_dir(paths)


def _threads(machine: FakeMachine, tmp: Path) -> int:
    machine.reset()
    paths = write_helper_config(tmp, machine.sandbox)
    helper = start_helper(paths)
    conns = []
    try:
        for _ in range(300):
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(paths.socket))
            conns.append(conn)
        time.sleep(2)
        return _status_kib(helper.pid, "Threads")
    finally:
        for conn in conns:
            conn.close()
        helper.stop()
        cleanup_socket_dir(paths)


def _full_disk(machine: FakeMachine, tmp: Path) -> str:
    machine.reset()
    paths = write_helper_config(tmp, machine.sandbox)
    with mounted_tmpfs(paths.state_dir, "64k") as state:
        helper = start_helper(paths)
        client = HelperClient(paths.socket, timeout=10)
        try:
            filler = state / "filler"
            fill = ["sh", "-c", f"head -c 1000000 /dev/zero > {filler}; exit 0"]
            client.apply(machine.systems["new"], health_checks=[_check(fill)])
            time.sleep(15)
            status = client.status()
            op = status["operation"] or (status["recent"] or [{}])[0]
            journal = json.loads((state / "journal.json").read_text())["operation"]
            running = (
                "new"
                if os.path.realpath(machine.sandbox.current_system) == machine.systems["new"]
                else "old"
            )
            filler.unlink()
            try:
                client.apply(machine.systems["new"], health_checks=[_check(["true"])])
                later = "taken"
            except HelperError as exc:
                later = f"refused: {exc.code}"
            return (
                f"busy={status['busy']}, in memory {op.get('state')}, journal "
                f"{journal and journal['state']}, running the {running} generation; "
                f"a deploy after freeing the space: {later}"
            )
        except (HelperUnavailable, OSError) as exc:
            return f"helper unusable: {exc}"
        finally:
            helper.stop()
            cleanup_socket_dir(paths)


def rows(soak_seconds: float = 600.0) -> list[dict[str, Any]]:
    os.environ.setdefault("NIX_CONFIG", OFFLINE_NIX_CONFIG)
    tmp = Path(tempfile.mkdtemp(prefix="bench-hostile-"))
    try:
        machine = build_machine(tmp / "machine", {"old": {"version": "1"}, "new": {"version": "2"}})
        ref_peak, _, _ = _peak_after(machine, tmp / "ref", ["false"])
        flood = f"head -c {FLOOD} /dev/zero | tr '\\0' x; exit 1"
        peak, journal, archived = _peak_after(machine, tmp / "flood", ["sh", "-c", flood])
        threads = _threads(machine, tmp / "threads")
        disk = _full_disk(machine, tmp / "disk")
        soak = "skipped"
        if soak_seconds > 0:
            with fake_machine(tmp / "soak", interval="2s") as soak_machine:
                try:
                    soak = str(run_soak(soak_machine, 15, soak_seconds)).split(":")[0] + ": held"
                finally:
                    soak_machine.stop_agents()
                    soak_machine.helper.stop()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return [
        {
            "metric": "helper peak RSS (MB), check printing 20 MB on one line, vs `false`",
            "pullnix": round(peak, 1),
            "reference": round(ref_peak, 1),
            "ratio": round(peak / ref_peak, 2),
            "target": "<= 1.5",
        },
        {
            "metric": "largest journal.json / archived operation (bytes) under that flood",
            "pullnix": f"{journal} / {archived}",
            "reference": None,
            "ratio": None,
            "target": "<= 64 KiB",
        },
        {
            "metric": "helper threads with 300 idle connections",
            "pullnix": threads,
            "reference": None,
            "ratio": None,
            "target": "<= 36",
        },
        {
            "metric": "state dir full during Verifying",
            "pullnix": disk,
            "reference": None,
            "ratio": None,
            "target": "rolled back, not busy, next deploy taken",
        },
        {
            "metric": f"crash soak, {soak_seconds:g} s of seeded SIGKILLs",
            "pullnix": soak,
            "reference": None,
            "ratio": None,
            "target": "converges, invariants hold",
        },
    ]


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = sys.argv[1:] if argv is None else argv
    found = rows(float(args[0]) if args else 600.0)
    print(json.dumps(found, indent=2))
    return found


if __name__ == "__main__":
    main()
