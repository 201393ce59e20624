"""SIGKILL the helper at every step of an operation, restart it, and see the machine converge.

The helper's test hook `PULLNIX_HELPER_CRASH_AT=<state or step>` makes it kill
itself right after that state is journaled (before acting on it) or right after
that step is done (before its outcome is journaled). After a restart without
the hook, the system (current system, profile, boot default), the journal and
the committed-generation records must agree with the operation's recorded outcome.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.helper.client import HelperUnavailable
from reconciler.helper.operator import CRASH_ENV
from reconciler.helper.records import read_committed
from tests.support.helperproc import (
    FakeMachine,
    HelperPaths,
    add_to_store,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)

pytestmark = pytest.mark.nix

CHECK = [{"name": "true", "timeout": 5, "command": {"argv": ["true"]}}]


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    tmp = tmp_path_factory.mktemp("helper-crash")
    built = build_machine(tmp, {"old": {"version": "1"}, "new": {"version": "2"},
                                "fails": {"version": "3", "activation": "fail"}})
    # A toplevel whose bootloader install fails: the commit breaks after the profile moved.
    wrapper = tmp / "nixos-system-edge-01-bootfails"
    (wrapper / "bin").mkdir(parents=True)
    script = wrapper / "bin" / "switch-to-configuration"
    script.write_text("#!/bin/sh\nif [ \"$1\" = boot ]; then echo 'bootloader: disk full' >&2; "
                      f"exit 5; fi\nexec {built.systems['new']}/bin/switch-to-configuration "
                      "\"$@\"\n")
    script.chmod(0o755)
    systems = {**built.systems, "bootfails": add_to_store(wrapper)}
    return FakeMachine(built.sandbox, built.repo, systems, built.revisions)


@pytest.fixture
def paths(machine: FakeMachine, tmp_path: Path) -> Iterator[HelperPaths]:
    machine.reset()
    paths = write_helper_config(tmp_path, machine.sandbox)
    yield paths
    cleanup_socket_dir(paths)


# (crash point, system to apply, extra apply arguments, the outcome it must converge to)
CASES = [
    ("Pending", "new", {}, "RolledBack"),
    ("Activating", "new", {}, "RolledBack"),
    ("activate", "new", {}, "RolledBack"),
    ("Verifying", "new", {}, "RolledBack"),
    ("check", "new", {}, "RolledBack"),
    ("Committing", "new", {}, "Succeeded"),
    ("set-profile", "new", {}, "Succeeded"),
    ("install-boot", "new", {}, "Succeeded"),
    ("record", "new", {}, "Succeeded"),
    ("Succeeded", "new", {}, "Succeeded"),
    ("RollingBack", "fails", {}, "RolledBack"),
    ("reactivate", "fails", {}, "RolledBack"),
    ("RolledBack", "fails", {}, "RolledBack"),
    ("confirm", "new", {"require_confirm": True, "confirm_timeout": 0.2}, "RolledBack"),
    ("install-boot", "bootfails", {}, "RolledBack"),
    ("restore-profile", "bootfails", {}, "RolledBack"),
    ("reactivate", "bootfails", {}, "RolledBack"),
]


@pytest.mark.parametrize(("point", "system", "extra", "outcome"), CASES,
                         ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_killed_at_any_step_the_restarted_helper_converges(
        machine: FakeMachine, paths: HelperPaths, point: str, system: str,
        extra: dict[str, Any], outcome: str) -> None:
    target, old = machine.systems[system], machine.systems["old"]
    doomed = start_helper(paths, env={CRASH_ENV: point})
    try:
        op_id = doomed.client.apply(target, revision=f"rev-{system}", health_checks=CHECK,
                                    **extra)
    except HelperUnavailable:  # killed before it could answer: the journal knows the id
        op_id = json.loads((paths.state_dir / "journal.json").read_text())["operation"]["id"]
    assert doomed.wait_exit(timeout=30) == -signal.SIGKILL, doomed.stderr_text()

    helper = start_helper(paths)
    try:
        result = helper.client.wait(op_id, timeout=30)
        status = helper.client.status()
    finally:
        helper.stop()
    assert result["state"] == outcome, result["message"]
    assert status["busy"] is False
    assert json.loads((paths.state_dir / "journal.json").read_text())["operation"] is None
    committed = [e.store_path for e in read_committed(paths.state_dir)]
    expected = {"Succeeded": machine.systems["new"], "RolledBack": old}[outcome]
    assert machine.current() == expected
    assert machine.profile() == expected
    assert machine.boot_default() == expected
    if outcome == "Succeeded":
        assert committed == [target]  # recorded exactly once, even when redone
        assert result["generation"] is not None
    else:
        assert committed == []
    if point not in ("Pending", "Succeeded", "RolledBack"):
        assert any("after a restart" in t["message"] or "restarted" in t["message"]
                   for t in result["transitions"]), result["transitions"]
