"""The wave gate as a table: (rollout, host, revision, what Prometheus said, now) -> verdict."""

from __future__ import annotations

import pytest

from reconciler.core.model import Rollout, Wave, WaveAfter
from reconciler.core.outcome import outcome_of
from reconciler.core.waves import (
    FailedRevision,
    FleetUnknown,
    FleetView,
    Go,
    HostReport,
    RolloutHalted,
    WaitForWave,
    gate,
    wave_index,
)

R = "3f2a1c" + "0" * 34
OLD = "9e8d7c" + "0" * 34
NOW = 1_000_000.0

WAVES = Rollout(
    (
        Wave("canary", ("canary-*",)),
        Wave("edge", ("edge-*",), WaveAfter(soak=1800.0, min_healthy="100%")),
        Wave("everyone", ("*",), WaveAfter(soak=3600.0, min_healthy="50%")),
    )
)


def ready(host: str, since: float, revision: str = R) -> HostReport:
    return HostReport(host, revision, True, NOW - since, "Succeeded")


def fleet(*hosts: HostReport, failures: tuple[FailedRevision, ...] = ()) -> FleetView:
    return FleetView(hosts, failures)


CANARIES_SOAKED = (ready("canary-01", 3600), ready("canary-02", 1801))

CASES: list[tuple[str, Rollout, str, FleetView | FleetUnknown, type, str]] = [
    ("no waves: every host goes", Rollout(), "edge-01", fleet(), Go, ""),
    ("wave 0 goes at once, even with Prometheus down", WAVES, "canary-01",
     FleetUnknown("http://p:9090", "connection refused", 5), Go, ""),
    ("a later wave goes when the previous one soaked", WAVES, "edge-01",
     fleet(*CANARIES_SOAKED), Go, ""),
    ("a later wave waits out the soak, with the numbers", WAVES, "edge-01",
     fleet(ready("canary-01", 3600), ready("canary-02", 720)), WaitForWave,
     "canary: 2/2 hosts healthy on 3f2a1c000000 for 12m of 30m; needs 2 (100%)"),
    ("a canary on the old revision is named", WAVES, "edge-01",
     fleet(ready("canary-01", 3600), ready("canary-02", 3600, OLD)), WaitForWave,
     "canary: 1/2 hosts healthy on 3f2a1c000000; needs 2 (100%); not yet: "
     "canary-02 (on 9e8d7c000000)"),
    ("a stale canary does not count", WAVES, "edge-01",
     fleet(ready("canary-01", 3600), HostReport("canary-02", R, True, NOW - 3600, "", True)),
     WaitForWave, "not yet: canary-02 (stale)"),
    ("a canary not Ready says why", WAVES, "edge-01",
     fleet(ready("canary-01", 3600), HostReport("canary-02", R, False, None, "Progressing")),
     WaitForWave, "canary-02 (not Ready: Progressing)"),
    ("minHealthy 50% lets a wave go with one of two down", WAVES, "db-01",
     fleet(*CANARIES_SOAKED, ready("edge-01", 7200),
           HostReport("edge-02", None, False, None, "", True)), Go, ""),
    ("minHealthy 50% still waits for the soak", WAVES, "db-01",
     fleet(ready("edge-01", 60), HostReport("edge-02", None, False, None, "", True)),
     WaitForWave, "edge: 1/2 hosts healthy on 3f2a1c000000 for 1m of 1h; needs 1 (50%)"),
    ("an empty wave is skipped: the last wave looks at the canaries", WAVES, "db-01",
     fleet(*CANARIES_SOAKED), Go, ""),
    ("an empty previous wave and a canary not soaked: wait for the canary", WAVES, "db-01",
     fleet(ready("canary-01", 10)), WaitForWave, "canary: 1/1 hosts healthy"),
    ("no earlier wave has hosts: go", WAVES, "db-01", fleet(ready("db-02", 0)), Go, ""),
    ("a rollback in wave 0 halts every later host, naming it", WAVES, "db-01",
     fleet(*CANARIES_SOAKED, failures=(FailedRevision("canary-02", R, "RolledBack"),)),
     RolloutHalted, "canary-02 (wave canary) reported RolledBack"),
    ("a failure of another revision halts nothing", WAVES, "edge-01",
     fleet(*CANARIES_SOAKED, failures=(FailedRevision("canary-02", OLD, "RolledBack"),)),
     Go, ""),
    ("a failure in the same wave halts nothing here", WAVES, "edge-01",
     fleet(*CANARIES_SOAKED, failures=(FailedRevision("edge-02", R, "BuildFailed"),)), Go, ""),
    ("Prometheus down: wait and say so", WAVES, "edge-01",
     FleetUnknown("http://p:9090", "connection refused", 8), WaitForWave,
     "cannot ask Prometheus at http://p:9090 about the earlier waves (connection refused); "
     "not deploying 3f2a1c000000 until it answers (next try in 8s)"),
    ("many lagging hosts: three names and a count",
     Rollout((Wave("a", ("a-*",)), Wave("b", ("*",)))), "b-1",
     fleet(*(HostReport(f"a-{i}", None, False) for i in range(5))), WaitForWave,
     "a-0 (nothing applied), a-1 (nothing applied), a-2 (nothing applied) and 2 more"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rollout", "host", "answers", "verdict", "message"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_the_wave_gate(
    rollout: Rollout, host: str, answers: FleetView | FleetUnknown, verdict: type, message: str
) -> None:
    result = gate(rollout, host, R, answers, NOW)
    assert type(result) is verdict
    if not isinstance(result, Go):
        assert message in outcome_of(result, None).message


def test_a_host_belongs_to_the_first_matching_wave_and_unmatched_hosts_go_last() -> None:
    narrow = Rollout((Wave("canary", ("canary-*",)), Wave("edge", ("edge-*",))))
    assert [wave_index(WAVES, h) for h in ("canary-1", "edge-1", "db-1")] == [0, 1, 2]
    assert wave_index(narrow, "db-1") == 2


def test_the_verdicts_read_as_reasons_in_the_status() -> None:
    halted = gate(
        WAVES, "edge-1", R, fleet(failures=(FailedRevision("canary-02", R, "RolledBack"),)), NOW
    )
    assert isinstance(halted, RolloutHalted)
    outcome = outcome_of(halted, None)
    assert (outcome.phase, outcome.reason) == ("Stalled", "RolloutHalted")
    assert gate(WAVES, "edge-1", R, fleet(), NOW) == Go("edge")  # no canary known: go
    held = outcome_of(gate(WAVES, "edge-1", R, fleet(ready("canary-01", 0)), NOW), None)
    assert (held.phase, held.reason) == ("Progressing", "WaitingForWave")
