"""Self-upgrade: the helper moves its own profile and re-execs, but never mid-operation."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from reconciler.common.client import HelperError
from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    add_to_store,
    build_machine,
)

pytestmark = pytest.mark.nix


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    return build_machine(
        tmp_path_factory.mktemp("helper-upgrade"),
        {"old": {"version": "1"}, "new": {"version": "2"}},
    )


def helper_package(tmp: Path, marker: Path) -> str:
    """A store path laid out like the helper's package: bin/pullnix-helper (this venv's)."""
    package = tmp / "pullnix-helper-next"
    (package / "bin").mkdir(parents=True)
    script = package / "bin" / "pullnix-helper"
    script.write_text(
        f'#!/bin/sh\necho "$$" >> {marker}\n'
        f'exec {Path(sys.executable).with_name("pullnix-helper")} "$@"\n'
    )
    script.chmod(0o755)
    return add_to_store(package)


def wait_for_reexec(helper: HelperProcess, marker: Path, before: float) -> dict[str, object]:
    deadline = time.monotonic() + 20
    while True:
        try:
            ping = helper.client.ping()
            if ping["startedAt"] != before:
                return ping
        except Exception:  # noqa: S110 - it is re-executing: the socket comes and goes
            pass
        assert time.monotonic() < deadline, helper.stderr_text()
        time.sleep(0.05)


def test_idle_upgrade_moves_the_profile_and_reexecs_in_place(
    helper: HelperProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    package = helper_package(tmp_path, marker)
    before = helper.client.ping()
    answer = helper.client.upgrade(package)
    assert answer["queued"] is False
    ping = wait_for_reexec(helper, marker, float(str(before["startedAt"])))
    assert ping["pid"] == helper.pid  # exec, not a new process
    assert os.path.realpath(helper.paths.helper_profile) == package
    assert marker.read_text().split()[-1] == str(helper.pid)  # the new program ran
    assert helper.client.status()["upgradePending"] is None


def test_upgrade_waits_for_the_operation_in_progress(
    machine: FakeMachine, helper: HelperProcess, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    package = helper_package(tmp_path, marker)
    before = helper.client.ping()
    slow = [{"name": "slow", "timeout": 5, "command": {"argv": ["sleep", "0.5"]}}]
    op_id = helper.client.apply(machine.systems["new"], health_checks=slow)
    answer = helper.client.upgrade(package)
    assert answer["queued"] is True
    assert op_id in str(answer["message"])
    assert helper.client.status()["upgradePending"] == package
    result = helper.client.wait(op_id)
    assert result["state"] == "Succeeded", result["message"]  # not interrupted
    ping = wait_for_reexec(helper, marker, float(str(before["startedAt"])))
    assert ping["pid"] == helper.pid
    assert os.path.realpath(helper.paths.helper_profile) == package
    assert helper.client.status(op_id)["found"]["state"] == "Succeeded"


def test_upgrade_to_something_else_is_refused(machine: FakeMachine, helper: HelperProcess) -> None:
    with pytest.raises(HelperError) as refused:
        helper.client.upgrade(machine.systems["new"])
    assert refused.value.code == "bad-store-path"
    assert not helper.paths.helper_profile.exists()
