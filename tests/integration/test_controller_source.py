"""The git source as the controller uses it, through `pullnix reconcile --once`.

Pins: a `spec.revision` pin to a commit off the branch (a hotfix tag) is
deployed, later passes with the same tip converge instead of refusing the tip as
a downgrade of the pinned commit, a commit that drops the pin deploys the branch
head, and a real force-push to older history is still refused; the same holds
when the agent's state dir is lost while the pin is deployed (the helper's
record and the pin carried by the trusted tip are enough). URLs: the status
says which URL served, and credentials in a URL never reach status.json.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.agentmachine import Machine, spec_yaml
from tests.support.nixfixture import commit_fleet, read_calls

pytestmark = pytest.mark.nix

TAG = "hotfix-1"


def git(cwd: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@pullnix.invalid",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@pullnix.invalid",
        "GIT_CONFIG_NOSYSTEM": "1",
    }
    return subprocess.run(
        ["git", "-C", str(cwd), *args], check=True, capture_output=True, text=True, env=env
    ).stdout.strip()


def off_branch_hotfix(machine: Machine) -> str:
    """A commit tagged TAG on no branch: a sibling of the branch's first commit."""
    base = machine.repo.sha
    hotfix = commit_fleet(machine.repo, version="1-hotfix", message="hotfix on the side")
    git(machine.repo.bare, "tag", TAG, hotfix)
    git(machine.repo.bare, "update-ref", "refs/heads/main", base)
    git(machine.repo.worktree, "reset", "--quiet", "--hard", base)
    assert git(machine.repo.bare, "branch", "--contains", hotfix) == ""
    return hotfix


def pinned_spec(machine: Machine, pin: str) -> str:
    return spec_yaml(machine.sandbox) + f'  revision: "{pin}"\n'


def switches(machine: Machine) -> int:
    return len(read_calls(machine.sandbox))


def ready(machine: Machine) -> tuple[str, str]:
    condition = machine.condition("Ready")
    return condition["status"], condition["reason"]


def is_stalled(machine: Machine) -> bool:
    return any(
        c["type"] == "Stalled" and c["status"] == "True"
        for c in machine.status()["status"]["conditions"]
    )


def drop_the_pin(machine: Machine) -> str:
    """Commit the spec without its pin, reconcile: the branch head is applied; its SHA."""
    head = commit_fleet(
        machine.repo,
        files={"pullnix.yaml": spec_yaml(machine.sandbox)},
        version="3",
        message="fleet: drop the pin",
    )
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    assert machine.status()["status"]["lastAppliedRevision"] == head
    return head


def test_a_pin_off_the_branch_is_deployed_kept_and_released(machine: Machine) -> None:
    first_system = machine.current()
    hotfix = off_branch_hotfix(machine)
    carrier = commit_fleet(
        machine.repo,
        files={"pullnix.yaml": pinned_spec(machine, TAG)},
        message="fleet: pin the hotfix",
    )
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    status = machine.status()["status"]
    assert status["lastAppliedRevision"] == hotfix
    assert status["source"]["revision"] == carrier
    assert machine.current() != first_system
    pinned_system, calls = machine.current(), switches(machine)

    for _ in range(2):  # the same tip again: converged, not a downgrade of the pinned commit
        again = machine.reconcile()
        assert again.returncode == 0, again.stdout + again.stderr
        assert ready(machine) == ("True", "Succeeded")
        assert not is_stalled(machine)
        assert (machine.current(), switches(machine)) == (pinned_system, calls)

    head = drop_the_pin(machine)
    assert machine.current() == machine.built(head)
    head_system, calls = machine.current(), switches(machine)

    git(machine.repo.bare, "update-ref", "refs/heads/main", carrier)  # a real force-push
    refused = machine.reconcile()
    assert refused.returncode == 3, refused.stdout + refused.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "DowngradeRefused")
    assert carrier[:12] in stalled["message"]
    assert (machine.current(), switches(machine)) == (head_system, calls)
    assert machine.status()["status"]["lastAppliedRevision"] == head


def test_a_pin_survives_the_loss_of_the_agent_state_dir(machine: Machine) -> None:
    hotfix = off_branch_hotfix(machine)
    commit_fleet(
        machine.repo,
        files={"pullnix.yaml": pinned_spec(machine, hotfix)},
        message="fleet: pin the hotfix by commit id",
    )
    assert machine.reconcile().returncode == 0
    assert machine.status()["status"]["lastAppliedRevision"] == hotfix
    pinned_system = machine.current()

    shutil.rmtree(machine.tmp / "agent-state")
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    assert ready(machine) == ("True", "Succeeded")
    assert machine.current() == pinned_system

    drop_the_pin(machine)


def test_a_dropped_pin_is_no_downgrade_even_when_the_agent_state_dir_is_lost(
    machine: Machine,
) -> None:
    """The helper recorded the tip that carried the pin with the generation it committed,
    so a later tip without the pin is checked against that tip, not the pinned commit."""
    hotfix = off_branch_hotfix(machine)
    carrier = commit_fleet(
        machine.repo,
        files={"pullnix.yaml": pinned_spec(machine, hotfix)},
        message="fleet: pin the hotfix by commit id",
    )
    assert machine.reconcile().returncode == 0
    records = json.loads((machine.paths.state_dir / "generations.json").read_text())
    assert records["generations"][-1]["revision"] == hotfix
    assert records["generations"][-1]["sourceRevision"] == carrier

    shutil.rmtree(machine.tmp / "agent-state")
    head = drop_the_pin(machine)
    assert machine.current() == machine.built(head)


def test_the_status_names_the_url_that_served(machine: Machine) -> None:
    missing = f"file://{machine.tmp}/no-such-fleet.git"
    machine.configure(urls=[missing, f"file://{machine.repo.bare}"])
    sha = commit_fleet(machine.repo, version="2")
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    source = machine.status()["status"]["source"]
    assert source["url"] == f"file://{machine.repo.bare}"
    assert source["revision"] == sha
    assert [s.split(": ")[0] for s in source["skipped"]] == [missing]


def test_credentials_in_a_url_never_reach_the_status(machine: Machine) -> None:
    secret = "s3cr3t-t0ken"
    # Nothing listens on port 9 of 127.0.0.1: the fetch fails and says which URL failed.
    machine.configure(
        urls=[f"http://deploy:{secret}@127.0.0.1:9/fleet.git", f"file://{machine.repo.bare}"]
    )
    assert machine.reconcile().returncode == 0
    text = (machine.tmp / "agent-state" / "status.json").read_text()
    assert secret not in text
    skipped = json.loads(text)["status"]["source"]["skipped"]
    assert skipped[0].startswith("http://deploy:***@127.0.0.1:9/fleet.git: ")

    machine.configure(urls=[f"http://deploy:{secret}@127.0.0.1:9/fleet.git"])
    done = machine.reconcile()
    assert done.returncode != 0
    text = (machine.tmp / "agent-state" / "status.json").read_text()
    assert secret not in text
    assert "http://deploy:***@127.0.0.1:9/fleet.git" in machine.condition("Ready")["message"]
    assert secret not in done.stdout + done.stderr
