"""The helper as a real process switching a real-Nix fixture system: commit, roll back, confirm."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.common.client import HelperClient, HelperError
from reconciler.common.records import read_committed
from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    build_machine,
    start_helper,
)
from tests.support.nixfixture import read_calls

pytestmark = pytest.mark.nix
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    tmp = tmp_path_factory.mktemp("helper-apply")
    return build_machine(
        tmp,
        {
            "old": {"version": "1"},
            "new": {"version": "2"},
            "fails": {"version": "3", "activation": "fail"},
            "kills-agent": {"version": "4", "killPidfile": str(tmp / "agent.pid")},
            "hangs": {"version": "5", "activation": "hang", "hangSeconds": 60},
        },
    )


def committed_paths(helper: HelperProcess) -> list[str]:
    return [e.store_path for e in read_committed(helper.paths.state_dir)]


def test_trial_apply_activates_with_test_then_commits_and_records(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    new = machine.systems["new"]
    op_id = helper.client.apply(
        new,
        revision=machine.revisions["new"],
        trial=True,
        traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01",
    )
    result = helper.client.wait(op_id, timeout=30)
    assert result["state"] == "Succeeded", result["message"]
    assert (machine.current(), machine.profile(), machine.boot_default()) == (new, new, new)
    assert [(c["action"], c["toplevel"]) for c in read_calls(machine.sandbox)] == [
        ("test", new),
        ("boot", new),
    ]
    record = read_committed(helper.paths.state_dir)[-1]
    assert (record.store_path, record.revision) == (new, machine.revisions["new"])
    assert record.generation == result["generation"]
    assert result["traceparent"].startswith("00-111")
    assert [p["name"] for p in result["phases"]] == [
        "activate",
        "set-profile",
        "install-boot",
        "record",
    ]
    assert "switch-to-configuration test" in (helper.paths.state_dir / result["log"]).read_text()
    journal = json.loads((helper.paths.state_dir / "journal.json").read_text())
    assert journal == {"v": 1, "operation": None}


def test_failed_activation_rolls_back_to_the_old_system(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    old, bad = machine.systems["old"], machine.systems["fails"]
    result = helper.client.wait(helper.client.apply(bad, revision="r3"), timeout=30)
    assert result["state"] == "RolledBack"
    assert "activation failed" in result["message"]
    assert "exited 4" in result["message"]
    assert (machine.current(), machine.profile(), machine.boot_default()) == (old, old, old)
    assert [(c["action"], machine.name_of(c["toplevel"])) for c in read_calls(machine.sandbox)] == [
        ("test", "fails"),
        ("test", "old"),
    ]
    assert committed_paths(helper) == []


def test_non_trial_switch_rollback_restores_the_boot_default_too(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    old = machine.systems["old"]
    result = helper.client.wait(helper.client.apply(machine.systems["fails"], trial=False))
    assert result["state"] == "RolledBack"
    assert [(c["action"], machine.name_of(c["toplevel"])) for c in read_calls(machine.sandbox)] == [
        ("switch", "fails"),
        ("switch", "old"),
    ]
    assert (machine.current(), machine.profile(), machine.boot_default()) == (old, old, old)


def test_hung_activation_is_killed_at_its_timeout_and_rolled_back(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    start = time.monotonic()
    result = helper.client.wait(
        helper.client.apply(machine.systems["hangs"], activation_timeout=0.5)
    )
    assert time.monotonic() - start < 10
    assert result["state"] == "RolledBack"
    assert "still running after 0.5s; killed" in result["message"]
    assert machine.current() == machine.systems["old"]
    hung = subprocess.run(["pgrep", "-f", "sleep 60$"], capture_output=True, text=True, check=False)
    assert hung.stdout == ""  # the whole process group went, not just the script


def test_unconfirmed_generation_is_rolled_back_by_the_dead_man_switch(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    old = machine.systems["old"]
    start = time.monotonic()
    result = helper.client.wait(
        helper.client.apply(
            machine.systems["new"], revision="r2", require_confirm=True, confirm_timeout=0.3
        )
    )
    assert time.monotonic() - start >= 0.3
    assert result["state"] == "RolledBack"
    assert "did not confirm within 0.3s" in result["message"]
    assert (machine.current(), machine.profile()) == (old, old)
    assert helper.client.confirm(revision="r2")["state"] == "RolledBack"  # too late


def test_agent_killed_by_activation_and_its_successor_confirms(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    new, revision = machine.systems["kills-agent"], machine.revisions["kills-agent"]
    pidfile = machine.sandbox.root.parent / "agent.pid"
    with subprocess.Popen(
        [sys.executable, "-c", AGENT, str(helper.paths.socket), str(pidfile), new, revision],
        stdout=subprocess.PIPE,
        text=True,
        cwd=REPO,
    ) as agent:
        assert agent.stdout is not None
        op_id = agent.stdout.readline().strip()
        assert agent.wait(timeout=30) == -15  # SIGTERMed by the activation, as systemd would
    status = helper.client.status(op_id)["found"]
    assert status["state"] in ("Activating", "Verifying")
    successor = subprocess.run(
        [sys.executable, "-c", CONFIRM, str(helper.paths.socket), revision],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=REPO,
        check=True,
    )
    assert successor.stdout.strip() == op_id
    result = helper.client.wait(op_id)
    assert result["state"] == "Succeeded", result["message"]
    assert result["confirmedAt"] is not None
    assert (machine.current(), machine.profile()) == (new, new)
    pidfile.unlink()


AGENT = """
import os, sys
from reconciler.common.client import HelperClient
sock, pidfile, path, revision = sys.argv[1:]
open(pidfile, "w").write(str(os.getpid()))
client = HelperClient(sock)
op = client.apply(path, revision=revision, require_confirm=True, confirm_timeout=10)
print(op, flush=True)
client.wait(op)
"""
CONFIRM = """
import sys
from reconciler.common.client import HelperClient
print(HelperClient(sys.argv[1]).confirm(revision=sys.argv[2])["operationId"])
"""


def test_confirm_before_verifying_counts(machine: FakeMachine, helper: HelperProcess) -> None:
    slow = [{"name": "slow", "timeout": 5, "command": {"argv": ["sleep", "0.3"]}}]
    op_id = helper.client.apply(
        machine.systems["new"],
        revision="r2",
        require_confirm=True,
        confirm_timeout=0.2,
        health_checks=slow,
    )
    assert helper.client.confirm(operation_id=op_id)["operationId"] == op_id
    result = helper.client.wait(op_id)
    assert result["state"] == "Succeeded", result["message"]


def test_second_apply_while_busy_is_refused_with_the_operation(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    slow = [{"name": "slow", "timeout": 5, "command": {"argv": ["sleep", "0.5"]}}]
    first = helper.client.apply(machine.systems["new"], health_checks=slow)
    with pytest.raises(HelperError) as refused:
        helper.client.apply(machine.systems["fails"])
    assert refused.value.code == "busy"
    assert refused.value.answer["operation"]["id"] == first
    assert helper.client.wait(first)["state"] == "Succeeded"
    assert machine.systems["fails"] not in {c["toplevel"] for c in read_calls(machine.sandbox)}


def test_a_rollback_while_busy_is_refused_as_busy_not_as_nothing_to_do(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    """On a first deploy the profile has no older generation yet; while the apply runs
    the honest answer is that the helper is busy, not that there is nothing to undo."""
    slow = [{"name": "slow", "timeout": 5, "command": {"argv": ["sleep", "0.5"]}}]
    first = helper.client.apply(machine.systems["new"], health_checks=slow)
    with pytest.raises(HelperError) as refused:
        helper.client.rollback()
    assert refused.value.code == "busy"
    assert refused.value.answer["operation"]["id"] == first
    assert helper.client.wait(first)["state"] == "Succeeded"


def test_rollback_request_returns_to_the_previous_generation(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    old, new = machine.systems["old"], machine.systems["new"]
    helper.client.wait(helper.client.apply(new, revision="r2"))
    assert machine.profile() == new
    before = os.readlink(machine.sandbox.profile)
    result = helper.client.wait(helper.client.rollback())
    assert result["state"] == "Succeeded", result["message"]
    assert result["kind"] == "rollback"
    assert (machine.current(), machine.profile(), machine.boot_default()) == (old, old, old)
    assert os.readlink(machine.sandbox.profile) != before
    assert result["generation"] < int(before.rsplit("-", 2)[-2])
    assert committed_paths(helper)[-1] == old


def test_outcome_survives_a_helper_restart(machine: FakeMachine, helper: HelperProcess) -> None:
    op_id = helper.client.apply(machine.systems["new"], revision="r2")
    helper.client.wait(op_id)
    helper.stop()
    again = start_helper(helper.paths)
    try:
        status = again.client.status()
        assert status["busy"] is False
        assert status["recent"][0]["id"] == op_id
        assert again.client.status(op_id)["found"]["state"] == "Succeeded"
    finally:
        again.stop()


def test_ping_says_who_answers(helper: HelperProcess) -> None:
    ping = helper.client.ping()
    assert ping["pid"] == helper.pid
    assert ping["protocol"] == 1
    assert ping["version"]
    assert 0 <= ping["uptime"] < 60


def test_unknown_confirm_is_not_found(helper: HelperProcess) -> None:
    with pytest.raises(HelperError) as refused:
        HelperClient(helper.paths.socket).confirm(revision="nope")
    assert refused.value.code == "not-found"
