"""`pullnix reconcile --once` end to end: real git, real Nix (the fixture), the real helper process.

Each test drives a fleet repository through commits and asserts what a user
sees: the exit code, the status conditions, the history, and what ran on the
(fixture) machine.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentmachine import Machine, fake_machine, spec_yaml
from tests.support.nixfixture import commit_fleet, read_calls

pytestmark = pytest.mark.nix


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as machine:
        yield machine


def built(machine: Machine, sha: str) -> str:
    return machine.built(sha)


def test_a_new_commit_converges_and_a_second_pass_does_nothing(machine: Machine) -> None:
    first = machine.reconcile()
    assert first.returncode == 0, first.stderr
    sha = commit_fleet(machine.repo, version="2")
    done = machine.reconcile()
    assert done.returncode == 0, done.stderr
    assert machine.current() == built(machine, sha)
    status = machine.status()["status"]
    assert status["lastAppliedRevision"] == sha
    assert machine.condition("Ready")["status"] == "True"
    assert machine.condition("Healthy")["status"] == "True"
    assert status["history"][0]["result"] == "Succeeded"
    assert status["history"][0]["revision"] == sha
    assert len(status["history"][0]["traceId"]) == 32
    calls = len(read_calls(machine.sandbox))

    again = machine.reconcile()
    assert again.returncode == 0, again.stderr
    assert len(read_calls(machine.sandbox)) == calls  # nothing was activated


def test_a_failing_health_check_rolls_back_and_is_not_retried(machine: Machine) -> None:
    good = commit_fleet(machine.repo, version="2")
    assert machine.reconcile().returncode == 0
    good_system = machine.current()

    bad = commit_fleet(machine.repo, version="3", health="broken")
    done = machine.reconcile()
    assert done.returncode == 3, done.stderr
    assert machine.current() == good_system
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
    assert bad[:12] in ready["message"]
    assert machine.condition("Healthy")["status"] == "False"
    history = machine.status()["status"]["history"]
    assert history[0]["result"] == "RolledBack"
    assert history[0]["healthChecks"][0]["ok"] is False
    assert machine.status()["status"]["lastAppliedRevision"] == good

    calls = len(read_calls(machine.sandbox))
    assert machine.reconcile().returncode == 3
    assert len(read_calls(machine.sandbox)) == calls  # the rolled-back commit is not retried

    fixed = commit_fleet(machine.repo, version="4", health="ok")
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, fixed)


def test_a_build_failure_stalls_until_the_next_commit(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    commit_fleet(machine.repo, version="2", fail_build=True)
    done = machine.reconcile()
    assert done.returncode == 3
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "BuildFailed")
    assert "build failed on purpose" in stalled["message"]
    assert machine.current() == before

    fixed = commit_fleet(machine.repo, version="3", fail_build=False)
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, fixed)
    assert all(c["type"] != "Stalled" for c in machine.status()["status"]["conditions"])


def test_a_gate_that_refuses_stops_the_deploy(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    gate = '  gates:\n    - name: policy\n      command: {argv: ["ci/check"]}\n'
    check = '#!/bin/sh\necho "refusing $PULLNIX_NEW_SYSTEM"\nexit 1\n'
    script = machine.repo.worktree / "ci" / "check"
    script.parent.mkdir()
    script.write_text(check)
    script.chmod(0o755)  # git records the mode the file has in the work tree
    commit_fleet(
        machine.repo,
        version="2",
        files={"pullnix.yaml": spec_yaml(machine.sandbox, gates=gate), "ci/check": check},
    )
    done = machine.reconcile()
    assert done.returncode == 3
    stalled = machine.condition("Stalled")
    assert stalled["reason"] == "GateRefused"
    assert "refusing /nix/store/" in stalled["message"]
    assert machine.current() == before


def test_suspend_stops_deploys_and_resume_lets_them_through(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    assert machine.cli("suspend").returncode == 0
    sha = commit_fleet(machine.repo, version="2")
    machine.reconcile()
    assert machine.current() == before
    assert machine.condition("Ready")["reason"] == "Suspended"
    assert machine.cli("resume").returncode == 0
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, sha)


def test_status_and_history_print_tables(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    status = machine.cli("status")
    assert status.returncode == 0
    assert "Ready" in status.stdout
    assert "Succeeded" in status.stdout
    history = machine.cli("history")
    assert history.returncode == 0
    assert "TRACE ID" in history.stdout
    assert machine.status()["status"]["history"][0]["traceId"] in history.stdout
