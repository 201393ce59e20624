"""Benchmark: a fleet of real `pullnix agent` processes, their polls and a rollout in 3 waves.

N fake machines (N >= 50; tests/support/fleetmachines.py's layout: a sandbox,
a real `pullnix-helper` and a real `pullnix agent` each) follow one fleet
repository served over smart HTTP with a token (tests/support/gitserve's
HttpGitServer in a process of its own, behind bench_fleet's byte-counting
relay). Debian's Prometheus scrapes every agent each second.

1. reference: N `git fetch` loops (bench_fleet's git fleet) poll the same
   repository at the same interval; server CPU, bytes and polls are counted;
2. the agents start and take the first commit through the waves (warm-up);
3. no-op window: the agents poll an unchanged repository; server CPU, bytes
   and passes (each pass polls once) are counted, and each agent's RSS read;
4. rollout: one commit goes through canary (2), edge (8) and everyone else
   with 1 s soaks and minHealthy 100 %; the time from the push to the last
   host applying it, per wave;
5. one `read_fleet` (what a waiting agent and `pullnix fleet` ask Prometheus).

Run: `python -m bench.bench_waves [AGENTS] [SECONDS]`; `rows()` is the entry
point for `python -m bench --sections waves`. Not a test.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.bench_fleet import TOKEN, Relay, _cpu_seconds, _readline, _run_fleet
from reconciler.controller.store import StateStore
from reconciler.demo.fakenixos import KNOBS_FILE, OFFLINE_NIX_CONFIG, install_system, toplevel_attr
from reconciler.telemetry.fleet_query import read_fleet
from tests.support.gitserve import free_port
from tests.support.helperproc import cleanup_socket_dir, start_helper, write_helper_config
from tests.support.nixfixture import commit_fleet, init_fleet_repo, make_sandbox
from tests.support.prometheus import PrometheusServer

Row = dict[str, Any]
PULLNIX = Path(sys.executable).with_name("pullnix")
WAVES = """\
    waves:
      - name: canary
        hosts: ["canary-*"]
      - name: edge
        hosts: ["edge-*"]
        after: {soak: 1s, minHealthy: "100%"}
      - name: everyone
        hosts: ["*"]
        after: {soak: 1s, minHealthy: "100%"}
"""


def host_names(agents: int) -> list[str]:
    canaries, edges = 2, 8
    rest = agents - canaries - edges
    return (
        [f"canary-{i:02d}" for i in range(1, canaries + 1)]
        + [f"edge-{i:02d}" for i in range(1, edges + 1)]
        + [f"node-{i:03d}" for i in range(1, rest + 1)]
    )


def _wave(host: str) -> str:
    for wave in ("canary", "edge"):
        if host.startswith(wave):
            return wave
    return "everyone"


def _spec(sandboxes: dict[str, Any]) -> str:
    from tests.support.fleetmachines import fleet_spec

    return fleet_spec(sandboxes, WAVES)


def _say(text: str) -> None:
    print(f"bench_waves: {text}", file=sys.stderr, flush=True)


def rows(
    agents: int = 50, seconds: float = 60, interval: float = 5, jitter: float = 1
) -> list[Row]:
    os.environ["NIX_CONFIG"] = OFFLINE_NIX_CONFIG
    with tempfile.TemporaryDirectory(prefix="bench-waves-") as tmp:
        return _measure(Path(tmp), agents, seconds, interval, jitter)


def _measure(root: Path, agents: int, seconds: float, interval: float, jitter: float) -> list[Row]:
    hosts = host_names(agents)
    serve = root / "serve"
    serve.mkdir()
    sandboxes = {h: make_sandbox(root / "machines" / h) for h in hosts}
    repo = init_fleet_repo(serve, sandboxes[hosts[0]], hosts=tuple(hosts))
    doc = json.loads((repo.worktree / KNOBS_FILE).read_text())
    doc["sandboxes"] = {h: str(s.root) for h, s in sandboxes.items()}
    first = commit_fleet(
        repo,
        files={
            KNOBS_FILE: json.dumps(doc, indent=2, sort_keys=True) + "\n",
            "pullnix.yaml": _spec(sandboxes),
        },
    )
    _say(f"building {agents} toplevels")
    out = subprocess.run(
        ["nix", "build", "--no-link", "--json",
         *(f"{repo.flake_ref(first)}#{toplevel_attr(h)}" for h in hosts)],
        capture_output=True, text=True, check=False, timeout=1800,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"nix build failed:\n{out.stderr[-3000:]}")
    built = [str(b["outputs"]["out"]) for b in json.loads(out.stdout)]
    for host, path in zip(hosts, built, strict=True):
        install_system(sandboxes[host], path)
    token_file = root / "token"
    token_file.write_text(TOKEN)
    with subprocess.Popen(
        [sys.executable, "-m", "bench.bench_fleet", "--serve", str(serve)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    ) as server:  # fmt: skip
        assert server.stdin is not None
        assert server.stdout is not None
        relay = Relay(int(_readline(server.stdout, 30, "the server's port")))
        relay.start()
        url = f"http://127.0.0.1:{relay.port}/fleet.git"
        helpers: list[Any] = []
        procs: list[subprocess.Popen[bytes]] = []
        prometheus: PrometheusServer | None = None
        try:
            _say(f"reference: {agents} git fetch loops for {seconds:g} s")
            git = _run_fleet(
                "git", agents, interval, jitter, seconds, url, root, token_file, server, relay
            )
            ports = {h: free_port() for h in hosts}
            prometheus = PrometheusServer(
                root / "prometheus", [f"127.0.0.1:{p}" for p in ports.values()]
            )
            prometheus.start()
            _say(f"starting {agents} helpers and agents")
            for host in hosts:
                paths = write_helper_config(
                    root / "machines" / host, sandboxes[host], urls=[url],
                    extra_source={"token_file": str(token_file)},
                )  # fmt: skip
                text = paths.config.read_text().replace('host = "edge-01"', f'host = "{host}"', 1)
                text += (
                    f'\n[agent]\nsocket = "{paths.socket.parent / "agent.sock"}"\n'
                    f'\n[triggers]\ninterval = "{interval:g}s"\njitter = "{jitter:g}s"\n'
                    f'\n[telemetry]\nmetrics_listen = "127.0.0.1:{ports[host]}"\n'
                    f'\n[fleet]\nprometheus_url = "{prometheus.url}"\n'
                )
                paths.config.write_text(text)
                helpers.append((start_helper(paths, timeout=60), paths))
                log = (root / "machines" / host / "agent.log").open("ab")
                procs.append(
                    subprocess.Popen([str(PULLNIX), "--config", str(paths.config), "agent"],
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
                )  # fmt: skip
            states = {h: root / "machines" / h / "agent-state" for h in hosts}
            started = time.monotonic()
            _wait_applied(states, first, 1800)
            _say(f"warm-up rollout done in {time.monotonic() - started:.1f} s")
            passes0 = _passes(states)
            cpu0, (bytes0, _) = _cpu_seconds(server.pid), relay.total()
            time.sleep(seconds)
            cpu1, (bytes1, _) = _cpu_seconds(server.pid), relay.total()
            passes1 = _passes(states)
            rss = [_rss_mb(p.pid) for p in procs]
            helper_rss = [_rss_mb(h.pid) for h, _ in helpers]
            ours = {"server_cpu": cpu1 - cpu0, "bytes": bytes1 - bytes0, "polls": passes1 - passes0}
            _say(f"no-op window: {ours}")
            revision = commit_fleet(repo, version="2")
            pushed = time.monotonic()
            done = _wait_applied(states, revision, 1800)
            waves = {w: max(t for h, t in done.items() if _wave(h) == w) - pushed
                     for w in ("canary", "edge", "everyone")}  # fmt: skip
            began = time.monotonic()
            fleet = read_fleet(prometheus.api, time.time())
            query = time.monotonic() - began
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            for helper, paths in helpers:
                helper.stop()
                cleanup_socket_dir(paths)
            if prometheus is not None:
                prometheus.stop()
            relay.stop()
            server.stdin.close()
            if server.poll() is None:
                server.kill()
    return _rows(
        agents,
        seconds,
        interval,
        jitter,
        ours,
        git,
        rss,
        helper_rss,
        waves,
        query,
        len(fleet.hosts),
    )


def _wait_applied(states: dict[str, Path], revision: str, timeout: float) -> dict[str, float]:
    """Until every host applied `revision`; when each did (monotonic, as first seen)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    while len(seen) < len(states):
        for host, state in states.items():
            if host not in seen:
                doc = StateStore(state).load_status()
                if (doc.get("status") or {}).get("lastAppliedRevision") == revision:
                    seen[host] = time.monotonic()
        if time.monotonic() > deadline:
            missing = sorted(set(states) - set(seen))
            raise TimeoutError(f"{len(missing)} hosts did not apply {revision[:12]}: {missing[:5]}")
        time.sleep(0.2)
    return seen


def _passes(states: dict[str, Path]) -> int:
    """Passes every agent has ended so far, counted in their logs ("pass N done in ...")."""
    total = 0
    for state in states.values():
        log = state.parent / "agent.log"
        total += log.read_text(errors="replace").count(" done in ")
    return total


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _rows(
    agents: int,
    seconds: float,
    interval: float,
    jitter: float,
    ours: dict[str, Any],
    git: dict[str, Any],
    rss: list[float],
    helper_rss: list[float],
    waves: dict[str, float],
    query: float,
    known: int,
) -> list[Row]:
    label = f"{agents} real agents, every {interval:g}+-{jitter:g} s for {seconds:g} s"

    def per(r: dict[str, Any], key: str, scale: float = 1.0) -> float:
        return float(r[key]) * scale / max(int(r["polls"]), 1)

    def row(metric: str, a: float | None, b: float | None = None, target: str = "report") -> Row:
        return {
            "metric": metric,
            "pullnix": None if a is None else round(a, 3),
            "reference": None if b is None else round(b, 3),
            "ratio": round(a / b, 3) if a is not None and b else None,
            "target": target,
        }

    return [
        row(
            f"waves: server CPU per no-op poll (ms), {label}; vs git fetch loops",
            per(ours, "server_cpu", 1000),
            per(git, "server_cpu", 1000),
            "ratio <= 1.0",
        ),
        row(
            f"waves: bytes per no-op poll (TCP payload), {label}; vs git fetch loops",
            per(ours, "bytes"),
            per(git, "bytes"),
            "ratio <= 1.0",
        ),
        row(
            "waves: polls in the window (agent passes; git fetches)",
            ours["polls"],
            git["polls"],
            "context",
        ),
        row(
            f"waves: agent RSS per process, median / max of {agents} (MB)",
            statistics.median(rss),
            max(rss),
            "context",
        ),
        row(
            f"waves: helper RSS per process, median of {agents} (MB)", statistics.median(helper_rss)
        ),
        row("waves: push -> every canary applied it (s)", waves["canary"]),
        row("waves: push -> every edge host applied it (s)", waves["edge"]),
        row(
            f"waves: push -> all {agents} hosts applied it, 3 waves, 1 s soaks (s)",
            waves["everyone"],
        ),
        row(f"waves: one read_fleet from Prometheus, {known} hosts (s)", query),
    ]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    agents = int(args[0]) if args else 50
    seconds = float(args[1]) if len(args) > 1 else 60
    for r in rows(agents, seconds):
        print(json.dumps(r))


if __name__ == "__main__":
    main()
