"""SIGKILL the helper at every step of an operation, restart it, and see the machine converge.

The helper's test hook `PULLNIX_HELPER_CRASH_AT=<state or step>` makes it kill
itself right after that state is journaled (before acting on it) or right after
that step is done (before its outcome is journaled). After a restart without
the hook, the system (current system, profile, boot default), the journal and
the committed-generation records must agree with the operation's recorded outcome.

Every crash point the helper defines (`crash.CRASH_POINTS`) is covered, for
trial applies and for non-trial `switch` and `boot` applies: the scenarios
below are run through the helper's pure state machine to list the points each
one passes, and `test_cases_cover_every_crash_point_of_every_scenario` fails
when a point (say, a new step) has no case.
"""

from __future__ import annotations

import ast
import json
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from reconciler.common.client import HelperUnavailable
from reconciler.common.protocol import parse_apply
from reconciler.common.records import read_committed
from reconciler.helper import machine as m
from reconciler.helper import operator
from reconciler.helper.crash import CRASH_ENV, CRASH_POINTS, PRUNE
from tests.support.helperproc import (
    FakeMachine,
    HelperPaths,
    add_to_store,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)

PASS = {"name": "true", "timeout": 5, "command": {"argv": ["true"]}}
FAIL = {"name": "false", "timeout": 5, "command": {"argv": ["false"]}}
OLD_PATH, NEW_PATH = (f"/nix/store/{c * 32}-nixos-system-edge-01" for c in "ab")


@dataclass(frozen=True)
class Scenario:
    """One apply, from `old` to `target`, and how it ends when nothing crashes."""

    trial: bool
    action: str
    target: str
    old: str = "old"
    checks_pass: bool = True
    await_confirm: bool = False  # requireConfirm, and nobody confirms
    broken: frozenset[str] = frozenset()  # steps that fail on this machine

    @property
    def kind(self) -> str:
        return "trial" if self.trial else self.action

    def apply_fields(self) -> dict[str, Any]:
        """The `apply` request's fields, as on the wire, except `storePath` and `revision`."""
        return {
            "trial": self.trial,
            "action": self.action,
            "healthChecks": [PASS if self.checks_pass else FAIL],
            "requireConfirm": self.await_confirm,
            "confirmTimeout": 0.2,
        }


# "bootfails": the new system, but installing its bootloader fails (the commit breaks
# after the profile moved). "stuck": an old system none of whose switch-to-configuration
# calls succeed any more, so rolling back to it fails.
BOOTFAILS, STUCK = frozenset({"install-boot"}), frozenset({"reactivate", "restore-boot"})
SCENARIOS = {
    f"{kind}-{name}": Scenario(
        trial=kind == "trial", action="boot" if kind == "boot" else "switch", **args
    )
    for kind in ("trial", "switch", "boot")
    for name, args in {
        "ok": {"target": "new"},
        "check-fails": {"target": "new", "checks_pass": False},
        "unconfirmed": {"target": "new", "await_confirm": True},
        "stuck": {"target": "new", "old": "stuck", "checks_pass": False, "broken": STUCK},
        **(
            {}
            if kind == "boot"
            # a boot apply installs the bootloader as it activates
            else {"bootfails": {"target": "bootfails", "broken": BOOTFAILS}}
        ),
    }.items()
}

# (scenario, crash point, outcome, (current system, profile, boot default) afterwards)
AS_BEFORE, AS_NEW, BOOT_NEW = ("old", "old", "old"), ("new", "new", "new"), ("old", "new", "new")
CASES: list[tuple[str, str, str, tuple[str, str, str]]] = []
for _kind in ("trial", "switch", "boot"):
    _done = BOOT_NEW if _kind == "boot" else AS_NEW
    CASES += [
        (f"{_kind}-ok", point, "RolledBack", AS_BEFORE)
        for point in ("Pending", "Activating", "activate", "Verifying", "check")
    ]
    CASES += [
        (f"{_kind}-ok", point, "Succeeded", _done)
        for point in ("Committing", "set-profile", "install-boot", "record", "prune", "Succeeded")
    ]
    CASES += [(f"{_kind}-unconfirmed", "confirm", "RolledBack", AS_BEFORE)]
    CASES += [
        (f"{_kind}-check-fails", point, "RolledBack", AS_BEFORE)
        for point in (
            "RollingBack",
            "restore-boot" if _kind == "boot" else "reactivate",
            "RolledBack",
        )
    ]
    CASES += [
        (
            f"{_kind}-stuck",
            "Failed",
            "Failed",
            {
                "trial": ("new", "stuck", "stuck"),  # the trial ran; nothing else was touched
                "switch": ("new", "stuck", "new"),  # the switch also made it the boot default
                "boot": ("stuck", "stuck", "new"),
            }[_kind],
        )
    ]
    if _kind != "boot":
        CASES += [
            (f"{_kind}-bootfails", point, "RolledBack", AS_BEFORE)
            for point in ("install-boot", "restore-profile", "reactivate")
        ]


def crash_points_passed(scenario: Scenario) -> list[str]:
    """The crash points the helper passes in `scenario`, in order, per its state machine.

    Mirrors `Operator._drive`: a state's point as it is entered (or ends the
    operation), an effect's point after it is performed, retention after a commit.
    """
    request = parse_apply({**scenario.apply_fields(), "storePath": NEW_PATH})
    op = m.begin("op", "apply", request, m.Previous(OLD_PATH, OLD_PATH, 1), 0)
    passed: list[str] = []
    last_state: m.State | None = None
    while (effect := m.next_effect(op)) is not None:
        if op.state is not last_state:
            passed.append(str(op.state))
            last_state = op.state
        event: m.Event = m.Done(generation=2)
        if isinstance(effect, m.RunCheck):
            event = m.Checked(
                m.CheckResult(effect.spec.name, "command", scenario.checks_pass, "", 1, "t", "t")
            )
        elif isinstance(effect, m.AwaitConfirm):
            event = m.WaitOver()
        elif effect.step in scenario.broken:
            event = m.Broke("broken on purpose")
        if not isinstance(effect, m.Proceed):
            passed.append(effect.step)
        op = m.advance(op, event, 1)
    if op.state is m.State.SUCCEEDED and m.commits(request):
        passed.append(PRUNE)
    return [*passed, str(op.state)]


def test_every_crash_hook_in_the_operator_is_a_listed_point() -> None:
    # Points derived from the machine cover its steps; a step the shell adds must be
    # named in CRASH_POINTS (as a module constant), or this fails.
    tree = ast.parse(Path(operator.__file__).read_text())
    calls = [
        node.args[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == "crash_point"
    ]
    assert len(calls) >= 3
    for arg in calls:
        shown = ast.unparse(arg)
        if shown in ("str(op.state)", "effect.step"):
            continue  # a state, an effect's step: derived
        assert isinstance(arg, ast.Name), shown
        assert getattr(operator, arg.id) in CRASH_POINTS, shown


def test_cases_cover_every_crash_point_of_every_scenario() -> None:
    by_kind: dict[str, set[str]] = {}
    for name, scenario in SCENARIOS.items():
        passed = crash_points_passed(scenario)
        assert set(passed) <= set(CRASH_POINTS), name
        by_kind.setdefault(scenario.kind, set()).update(passed)
    for scenario_name, point, _, _ in CASES:
        assert point in crash_points_passed(SCENARIOS[scenario_name]), (scenario_name, point)
    covered = {kind: {p for s, p, _, _ in CASES if SCENARIOS[s].kind == kind} for kind in by_kind}
    assert covered == by_kind  # every point each kind of apply passes has a crash case
    assert set().union(*covered.values()) == set(CRASH_POINTS)
    assert len({(s, p) for s, p, _, _ in CASES}) == len(CASES)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    tmp = tmp_path_factory.mktemp("helper-crash")
    built = build_machine(tmp, {"old": {"version": "1"}, "new": {"version": "2"}})
    systems = {
        **built.systems,
        "bootfails": _wrapper(tmp, "bootfails", built.systems["new"], fails=["boot"]),
        "stuck": _wrapper(tmp, "stuck", built.systems["old"], fails=["switch", "test", "boot"]),
    }
    return FakeMachine(built.sandbox, built.repo, systems, built.revisions)


def _wrapper(tmp: Path, name: str, system: str, fails: list[str]) -> str:
    """A toplevel whose switch-to-configuration fails for `fails`, else runs `system`'s."""
    wrapper = tmp / f"nixos-system-edge-01-{name}"
    (wrapper / "bin").mkdir(parents=True)
    script = wrapper / "bin" / "switch-to-configuration"
    script.write_text(
        f'#!/bin/sh\ncase "$1" in {"|".join(fails)}) '
        f"echo '{name}: broken on purpose' >&2; exit 5;; esac\n"
        f'exec {system}/bin/switch-to-configuration "$@"\n'
    )
    script.chmod(0o755)
    return add_to_store(wrapper)


@pytest.fixture
def paths(machine: FakeMachine, tmp_path: Path) -> Iterator[HelperPaths]:
    paths = write_helper_config(tmp_path, machine.sandbox)
    yield paths
    cleanup_socket_dir(paths)


@pytest.mark.nix
@pytest.mark.parametrize(
    ("scenario_name", "point", "outcome", "after"), CASES, ids=[f"{c[0]}-at-{c[1]}" for c in CASES]
)
def test_killed_at_any_step_the_restarted_helper_converges(
    machine: FakeMachine,
    paths: HelperPaths,
    scenario_name: str,
    point: str,
    outcome: str,
    after: tuple[str, str, str],
) -> None:
    scenario = SCENARIOS[scenario_name]
    machine.reset(scenario.old)
    target = machine.systems[scenario.target]
    doomed = start_helper(paths, env={CRASH_ENV: point})
    try:
        op_id = doomed.client.request(
            "apply", storePath=target, revision="r2", **scenario.apply_fields()
        )["operationId"]
    except HelperUnavailable:  # killed before it could answer: the journal knows the id
        op_id = json.loads((paths.state_dir / "journal.json").read_text())["operation"]["id"]
    assert doomed.wait_exit(timeout=30) == -signal.SIGKILL, doomed.stderr_text()

    helper = start_helper(paths)
    try:
        result = helper.client.wait(op_id, timeout=30, poll=0.01)
        status = helper.client.status()
    finally:
        helper.stop()
    assert result["state"] == outcome, result["message"]
    assert (status["busy"], [r["id"] for r in status["recent"]]) == (False, [op_id])
    assert json.loads((paths.state_dir / "journal.json").read_text())["operation"] is None
    assert (
        tuple(
            machine.name_of(p)
            for p in (machine.current(), machine.profile(), machine.boot_default())
        )
        == after
    )
    committed = [e.store_path for e in read_committed(paths.state_dir)]
    if outcome == "Succeeded":
        assert committed == [target]  # recorded exactly once, even when redone
        assert result["generation"] is not None
    else:
        assert committed == []
    if outcome == "Failed":
        assert "ROLLBACK FAILED" in result["message"]
    assert any(
        "after a restart" in t["message"] or "restarted" in t["message"]
        for t in result["transitions"]
    ), result["transitions"]
