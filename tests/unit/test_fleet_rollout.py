"""`pullnix fleet rollout`'s report: the waves as the hosts export them, through the same gate."""

from __future__ import annotations

from reconciler.cli.fleet_commands import rollout_report
from reconciler.core.model import WaveAfter
from reconciler.core.waves import FailedRevision
from reconciler.telemetry.fleet_query import Fleet, HostRow

R, OLD, NOW = "3f2a1c" + "0" * 34, "9e8d7c" + "0" * 34, 10_000.0
SOAK = WaveAfter(soak=600.0)


def host(
    name: str,
    wave: str,
    index: int,
    revision: str,
    ready: str = "True",
    since: float = NOW - 60,
    stale: bool = False,
) -> HostRow:
    return HostRow(name, wave, revision, ready, "Succeeded", "Idle", NOW, since, NOW, stale,
                   index, SOAK if index else WaveAfter())  # fmt: skip


def states(fleet: Fleet) -> list[tuple[str, str]]:
    return [(w["name"], w["state"]) for w in rollout_report(fleet, R, NOW)]


def test_a_wave_waits_with_the_gates_numbers_until_the_soak_is_over() -> None:
    fleet = Fleet((host("c-1", "canary", 0, R), host("e-1", "edge", 1, OLD)), ())
    report = rollout_report(fleet, R, NOW)
    assert states(fleet) == [("canary", "Done"), ("edge", "Waiting")]
    assert (
        report[1]["message"]
        == "canary: 1/1 hosts healthy on 3f2a1c000000 for 1m of 10m; needs 1 (100%)"
    )
    soaked = Fleet((host("c-1", "canary", 0, R, since=NOW - 700), host("e-1", "edge", 1, OLD)), ())
    assert states(soaked) == [("canary", "Done"), ("edge", "Deploying")]


def test_a_rollback_fails_its_wave_and_halts_the_later_ones() -> None:
    fleet = Fleet(
        (host("c-1", "canary", 0, OLD, "False"), host("c-2", "canary", 0, R),
         host("e-1", "edge", 1, OLD)),
        (FailedRevision("c-1", R, "RolledBack"),),
    )  # fmt: skip
    report = rollout_report(fleet, R, NOW)
    assert states(fleet) == [("canary", "Failed"), ("edge", "Halted")]
    assert report[0]["failed"] == [{"host": "c-1", "reason": "RolledBack"}]
    assert report[1]["message"] == "c-1 (wave canary) reported RolledBack"


def test_a_wave_no_host_reports_is_skipped() -> None:
    fleet = Fleet((host("c-1", "canary", 0, R, since=NOW - 700), host("n-1", "all", 2, OLD)), ())
    assert states(fleet) == [("canary", "Done"), ("all", "Deploying")]
