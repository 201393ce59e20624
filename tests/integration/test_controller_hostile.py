"""Every failed pass is visible, and a pin that can never resolve stops for good.

- a pass that dies of an error no step foresaw (here the agent's record.json
  turned into a directory, an OSError) writes `Ready=False`, reason
  InternalError; `reconcile --once` exits 1, `pullnix status` exits 3;
- a full state dir (a real, full tmpfs) keeps status.json from being written:
  `pullnix status` then asks the running agent and does not claim health; with
  no agent, a last pass older than the interval allows is not vouched for either;
- `spec.revision: "../heads/main"` is InvalidSpec, Stalled, at once;
- a pinned tag that moves upstream is deployed at its new commit.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.test_controller_source import git
from tests.support.agentmachine import Machine, fake_machine, spec_yaml
from tests.support.nixfixture import commit_fleet
from tests.support.tmpfs import fill, mounted_tmpfs

pytestmark = pytest.mark.nix


def test_a_pass_that_fails_unforeseen_says_so_in_the_status(machine: Machine) -> None:
    assert machine.cli("status").returncode == 0
    record = machine.tmp / "agent-state" / "record.json"
    record.unlink()
    record.mkdir()  # a careless operator, or a broken disk: saving the record fails
    done = machine.reconcile()
    assert done.returncode == 1, done.stderr
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InternalError")
    assert "IsADirectoryError" in ready["message"]
    assert machine.cli("status").returncode == 3
    assert not list((machine.tmp / "agent-state").glob(".*.tmp"))


def test_status_does_not_vouch_for_a_status_the_agent_could_not_write(tmp_path: Path) -> None:
    with (
        mounted_tmpfs(tmp_path / "agent-state", "16m") as state,
        fake_machine(tmp_path, interval="1h") as machine,
    ):
        machine.start_agent()
        machine.wait_idle()
        assert machine.cli("status").returncode == 0
        filler = fill(state)
        asked = machine.cli("reconcile", "--now", "--wait", "--timeout", "60")
        assert asked.returncode == 1, asked.stdout + asked.stderr
        shown = machine.cli("status")
        assert machine.condition("Ready")["status"] == "True"  # the old file, unchanged
        assert shown.returncode == 3, shown.stdout
        assert "the running agent's last pass failed" in shown.stderr
        assert not list(state.glob(".*.tmp"))  # write_atomic left no half-written file
        filler.unlink()
        asked = machine.cli("reconcile", "--now", "--wait", "--timeout", "60")
        assert asked.returncode == 0, asked.stdout + asked.stderr
        assert machine.cli("status").returncode == 0
        machine.stop_agents()


def test_status_does_not_vouch_for_a_pass_long_ago(machine: Machine) -> None:
    path = machine.tmp / "agent-state" / "status.json"
    doc = json.loads(path.read_text())
    doc["status"]["lastPassAt"] = "2020-01-01T00:00:00Z"
    path.write_text(json.dumps(doc))
    shown = machine.cli("status")
    assert shown.returncode == 3
    assert "the last pass ran" in shown.stderr


def test_a_pin_git_refuses_is_stalled_as_an_invalid_spec_at_once(machine: Machine) -> None:
    spec = spec_yaml(machine.sandbox) + '  revision: "../heads/main"\n'
    commit_fleet(machine.repo, files={"pullnix.yaml": spec}, message="a bad pin")
    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert "git check-ref-format" in stalled["message"]


def test_a_moved_tag_is_deployed_at_its_new_commit(machine: Machine) -> None:
    first = machine.repo.sha
    git(machine.repo.bare, "tag", "-a", "-m", "release", "release", first)
    spec = spec_yaml(machine.sandbox) + '  revision: "release"\n'
    commit_fleet(machine.repo, files={"pullnix.yaml": spec}, message="pin the release tag")
    assert machine.reconcile().returncode == 0
    assert machine.status()["status"]["lastAppliedRevision"] == first
    second = commit_fleet(machine.repo, version="2", message="the next release")
    git(machine.repo.bare, "tag", "-f", "-a", "-m", "moved", "release", second)
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    assert machine.status()["status"]["lastAppliedRevision"] == second
    assert machine.current() == machine.built(second)
