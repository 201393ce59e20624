"""`pullnix agent` as a real process: it converges on start, follows pushes, and stops cleanly.

The interval is an hour in these tests, so every pass after the first one is
proof that a trigger (a watched file, the local API) started it.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentmachine import Machine, fake_machine, wait_for
from tests.support.nixfixture import commit_fleet, read_calls

pytestmark = [pytest.mark.nix, pytest.mark.slow]


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as machine:
        yield machine


def test_the_agent_converges_on_start_then_waits(machine: Machine) -> None:
    sha = commit_fleet(machine.repo, version="2")
    machine.start_agent()
    wait_for(lambda: machine.current() == machine.built(sha), 120, "the deploy")
    agent = machine.wait_idle()
    assert agent["lastPass"]["exitCode"] == 0
    assert machine.status()["status"]["lastAppliedRevision"] == sha
    assert machine.condition("Ready")["status"] == "True"
    passes = agent["passes"]
    assert agent["nextPassIn"] > 3000  # the interval (1h), not a hot loop
    assert machine.passes() == passes


def test_a_push_to_a_file_remote_triggers_a_pass_through_watchfiles(machine: Machine) -> None:
    machine.start_agent()
    machine.wait_idle()
    before = machine.passes()
    sha = commit_fleet(machine.repo, version="2")
    wait_for(lambda: machine.current() == machine.built(sha), 60, "the pushed commit to deploy")
    agent = machine.wait_idle()
    assert agent["passes"] > before
    assert "source" in machine.agent_status()["lastPass"]["reasons"] or any(
        "source" in line for line in machine.agents[0].log_text().splitlines() if "starts" in line
    )
    assert machine.status()["status"]["lastAppliedRevision"] == sha


def test_reconcile_now_wait_answers_with_the_verdict(machine: Machine) -> None:
    machine.start_agent()
    machine.wait_idle()
    good = machine.cli("reconcile", "--now", "--wait")
    assert good.returncode == 0, good.stderr
    assert "Succeeded" in good.stdout

    bad = commit_fleet(machine.repo, version="3", health="broken")
    done = machine.cli("reconcile", "--now", "--wait", "--timeout", "120", timeout=180)
    assert done.returncode == 3, done.stdout + done.stderr
    assert machine.status()["status"]["history"][0]["result"] == "RolledBack"
    assert bad[:12] in machine.condition("Ready")["message"]

    queued = machine.cli("reconcile", "--now")
    assert (queued.returncode, queued.stdout.strip()) == (0, "a pass is queued")


def test_reconcile_now_without_an_agent_is_an_error(machine: Machine) -> None:
    done = machine.cli("reconcile", "--now", "--wait")
    assert done.returncode == 1
    assert "no agent answers" in done.stderr


def test_suspend_and_resume_go_through_the_agent(machine: Machine) -> None:
    machine.start_agent()
    machine.wait_idle()
    before = machine.current()
    suspended = machine.cli("suspend")
    assert suspended.returncode == 0, suspended.stderr
    wait_for(
        lambda: machine.condition("Ready")["reason"] == "Suspended",
        30,
        "the agent to report Suspended",
    )
    sha = commit_fleet(machine.repo, version="2")
    wait_for(
        lambda: "source" in (machine.agent_status()["lastPass"] or {}).get("reasons", []),
        30,
        "a pass for the push",
    )
    machine.wait_idle()
    assert machine.current() == before
    assert machine.condition("Ready")["reason"] == "Suspended"

    assert machine.cli("resume").returncode == 0
    wait_for(lambda: machine.current() == machine.built(sha), 60, "the deploy after resume")


def test_sigterm_stops_the_agent_cleanly(machine: Machine) -> None:
    agent = machine.start_agent()
    machine.wait_idle()
    calls = len(read_calls(machine.sandbox))
    agent.proc.send_signal(signal.SIGTERM)
    assert agent.proc.wait(timeout=20) == 0
    assert not machine.agent_socket.exists()
    assert "stopping" in agent.log_text()
    assert len(read_calls(machine.sandbox)) == calls  # stopping activated nothing
