"""Waves against a real Prometheus scraping real agents: a bad commit stops at the canaries.

Three fake machines (canary-01, canary-02, edge-01), each a sandbox with its own
real `pullnix-helper` and `pullnix agent` (1 s interval, its own metrics port),
follow one repository; Debian's Prometheus scrapes them every second with the
example scrape config and alert rules. The tests run in file order on one
fleet, each pushing its own commit: a good commit waits out the soak, a
stopped Prometheus holds the edge until it returns, a broken commit is rolled
back on the canaries and halted everywhere after (with alerts firing), and
minHealthy 50 % lets the edge go with a canary down.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.controller.store import StateStore
from reconciler.demo.fakenixos import toplevel_attr
from reconciler.telemetry.fleet_query import read_fleet
from tests.support.agentmachine import PULLNIX, wait_for
from tests.support.fleetmachines import Fleet, fake_fleet
from tests.support.nixfixture import read_calls
from tests.support.prometheus import PrometheusServer

pytestmark = [pytest.mark.nix, pytest.mark.slow]

HOSTS = ("canary-01", "canary-02", "edge-01")
SOAK = 4.0


def waves(min_healthy: str = "100%") -> str:
    return f"""\
    waves:
      - name: canary
        hosts: ["canary-*"]
      - name: edge
        hosts: ["edge-*"]
        after: {{soak: {SOAK:g}s, minHealthy: "{min_healthy}"}}
"""


@pytest.fixture(scope="module")
def fleet_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, PrometheusServer]]:
    tmp = tmp_path_factory.mktemp("fleet")
    with fake_fleet(tmp, HOSTS, waves()) as fleet:
        prometheus = PrometheusServer(tmp / "prometheus", fleet.targets)
        fleet.configure(prometheus.url)
        prometheus.start()
        try:
            for machine in fleet.machines.values():
                machine.start_agent()
            wait_for(lambda: _known(prometheus) == set(HOSTS), 120, "Prometheus to see 3 agents")
            yield fleet, prometheus
        finally:
            prometheus.stop()


def _known(prometheus: PrometheusServer) -> set[str]:
    return {h.host for h in read_fleet(prometheus.api, time.time()).hosts if not h.stale}


def _scraped_on(prometheus: PrometheusServer, host: str) -> tuple[str, bool] | None:
    """The revision `host` applied and whether it is Ready, as Prometheus last scraped it."""
    rows = [h for h in read_fleet(prometheus.api, time.time()).hosts if h.host == host]
    return (rows[0].revision, rows[0].ready == "True") if rows else None


def status(fleet: Fleet, host: str) -> dict[str, Any]:
    doc: dict[str, Any] = StateStore(fleet.machines[host].tmp / "agent-state").load_status()
    return doc.get("status") or {}


def ready(fleet: Fleet, host: str) -> dict[str, Any]:
    conditions = status(fleet, host).get("conditions") or []
    return next((c for c in conditions if c["type"] == "Ready"), {})


def applied(fleet: Fleet, host: str) -> str | None:
    return status(fleet, host).get("lastAppliedRevision")


def wait_applied(fleet: Fleet, hosts: tuple[str, ...], revision: str, timeout: float = 240) -> None:
    wait_for(
        lambda: all(applied(fleet, h) == revision for h in hosts),
        timeout,
        f"{', '.join(hosts)} to apply {revision[:12]}: "
        + "; ".join(f"{h}: {ready(fleet, h).get('message')}" for h in hosts),
        interval=0.2,
    )


def seen_reason(fleet: Fleet, host: str, reason: str, timeout: float = 240) -> str:
    """Poll `host`'s Ready condition until its reason is `reason`; its message then."""
    messages: list[str] = []

    def seen() -> bool:
        condition = ready(fleet, host)
        if condition.get("reason") == reason:
            messages.append(str(condition.get("message")))
            return True
        return False

    wait_for(seen, timeout, f"{host} to say {reason}", interval=0.1)
    return messages[-1]


def toplevel(fleet: Fleet, revision: str, host: str) -> str:
    """The store path `host`'s system at `revision` would have (evaluated, not built)."""
    out = subprocess.run(
        ["nix", "eval", "--raw", f"{fleet.repo.flake_ref(revision)}#{toplevel_attr(host)}.outPath"],
        capture_output=True, text=True, check=True, timeout=120,
    )  # fmt: skip
    return out.stdout.strip()


def in_store(path: str) -> bool:
    return (
        subprocess.run(
            ["nix-store", "--check-validity", path], capture_output=True, check=False
        ).returncode
        == 0
    )


def activated_at(fleet: Fleet, host: str, store_path: str) -> float:
    return min(c["time"] for c in read_calls(fleet.sandboxes[host]) if c["toplevel"] == store_path)


def fleet_cli(prometheus: PrometheusServer, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PULLNIX), "fleet", *args, "--prometheus", prometheus.url],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_good_commit_reaches_the_canaries_and_the_edge_waits_out_the_soak(
    fleet_env: tuple[Fleet, PrometheusServer],
) -> None:
    fleet, _ = fleet_env
    revision = fleet.commit(waves(), version="2")
    message = seen_reason(fleet, "edge-01", "WaitingForWave")
    assert "canary:" in message
    assert f"healthy on {revision[:12]}" in message
    wait_applied(fleet, HOSTS, revision)
    canaries_ready = max(
        activated_at(fleet, h, toplevel(fleet, revision, h)) for h in ("canary-01", "canary-02")
    )
    edge_started = activated_at(fleet, "edge-01", toplevel(fleet, revision, "edge-01"))
    assert edge_started >= canaries_ready + SOAK


def test_prometheus_stopped_mid_rollout_holds_the_edge_until_it_returns(
    fleet_env: tuple[Fleet, PrometheusServer],
) -> None:
    fleet, prometheus = fleet_env
    prometheus.stop()
    revision = fleet.commit(waves(), version="3")
    wait_applied(fleet, ("canary-01", "canary-02"), revision)  # wave 0 needs no Prometheus
    message = seen_reason(fleet, "edge-01", "WaitingForWave")
    assert f"cannot ask Prometheus at {prometheus.url}" in message, message
    assert "next try in" in message
    assert applied(fleet, "edge-01") != revision
    prometheus.start()
    wait_applied(fleet, ("edge-01",), revision)


def test_a_broken_commit_is_rolled_back_on_the_canaries_and_halted_after_them(
    fleet_env: tuple[Fleet, PrometheusServer],
) -> None:
    fleet, prometheus = fleet_env
    before = applied(fleet, "edge-01")
    revision = fleet.commit(waves(), version="4", health="broken")
    message = seen_reason(fleet, "edge-01", "RolloutHalted")
    assert f"revision {revision[:12]} is never deployed in wave edge: canary-0" in message
    assert "RolledBack" in message
    passes = fleet.machines["edge-01"].passes()
    wait_for(lambda: fleet.machines["edge-01"].passes() >= passes + 3, 60, "three more passes")
    assert ready(fleet, "edge-01")["reason"] == "RolloutHalted"
    assert applied(fleet, "edge-01") == before
    assert not in_store(toplevel(fleet, revision, "edge-01"))  # never built there
    wait_for(lambda: prometheus.firing("PullnixRollback"), 120, "PullnixRollback to fire")
    fired = prometheus.firing("PullnixRollback")
    assert {a["revision"] for a in fired} == {revision}
    assert {a["host"] for a in fired} <= {"canary-01", "canary-02"}
    wait_for(lambda: prometheus.firing("PullnixRolloutHalted"), 120, "PullnixRolloutHalted")
    assert [a["host"] for a in prometheus.firing("PullnixRolloutHalted")] == ["edge-01"]

    shown = fleet_cli(prometheus, "rollout", revision[:8])
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0] == f"revision {revision}"
    assert lines[1].split() == [
        "WAVE",
        "HOSTS",
        "ON",
        "REVISION",
        "HEALTHY",
        "FAILED",
        "STATE",
        "MESSAGE",
    ]
    assert lines[3].split()[:6] == ["edge", "1", "0", "0", "0", "Halted"]
    report = json.loads(fleet_cli(prometheus, "rollout", revision, "--json").stdout)
    canary = report["waves"][0]
    assert canary["name"] == "canary"
    assert canary["state"] == "Failed"
    assert canary["failed"]
    assert report["waves"][1]["state"] == "Halted"


def test_min_healthy_below_100_percent_lets_the_edge_go_with_a_canary_down(
    fleet_env: tuple[Fleet, PrometheusServer],
) -> None:
    fleet, prometheus = fleet_env
    fleet.machines["canary-02"].stop_agents()
    wait_for(lambda: "canary-02" not in _known(prometheus), 60, "canary-02 to go stale")
    revision = fleet.commit(waves("50%"), version="5", health="ok")
    wait_applied(fleet, ("canary-01", "edge-01"), revision)
    assert applied(fleet, "canary-02") != revision
    wait_for(  # the agents know first; Prometheus once it has scraped them (every second)
        lambda: _scraped_on(prometheus, "edge-01") == (revision, True),
        60,
        "Prometheus to scrape edge-01 Ready on the new revision",
    )

    shown = fleet_cli(prometheus, "status")
    assert shown.returncode == 0, shown.stderr
    rows = [line.split() for line in shown.stdout.splitlines()]
    assert rows[0][:4] == ["HOST", "WAVE", "REVISION", "READY"]
    assert [r[0] for r in rows[1:]] == ["canary-01", "canary-02", "edge-01"]
    assert rows[2][-1] == "STALE"
    assert rows[3][:4] == ["edge-01", "edge", revision[:12], "True"]
    hosts = json.loads(fleet_cli(prometheus, "status", "--json").stdout)
    assert [h["stale"] for h in hosts] == [False, True, False]
