"""What the agent refuses, and how it says so: the running system stays, the status says why.

Each case goes through `pullnix reconcile --once` on the fake machine: a spec
that does not validate, a remote that does not answer, an unsigned commit when
signatures are required, a force-push to older history, a new kernel that needs
a reboot the policy does not allow.
"""

from __future__ import annotations

import os
import subprocess

import pytest

from tests.support.agentmachine import Machine, spec_yaml
from tests.support.nixfixture import commit_fleet, read_calls

pytestmark = pytest.mark.nix

GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "test",
    "GIT_AUTHOR_EMAIL": "test@pullnix.invalid",
    "GIT_COMMITTER_NAME": "test",
    "GIT_COMMITTER_EMAIL": "test@pullnix.invalid",
}


def nothing_built_or_switched(machine: Machine, before: tuple[str, int]) -> bool:
    return (machine.current(), len(read_calls(machine.sandbox))) == before


def snapshot(machine: Machine) -> tuple[str, int]:
    return machine.current(), len(read_calls(machine.sandbox))


def test_an_invalid_spec_stalls_with_its_file_line_and_field(machine: Machine) -> None:
    before = snapshot(machine)
    broken = spec_yaml(machine.sandbox).replace("retries: 0", "retries: lots")
    bad = commit_fleet(machine.repo, files={"pullnix.yaml": broken}, message="fleet: typo")
    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "InvalidSpec")
    assert (
        f"pullnix.yaml@{bad[:12]}:12:16: spec.healthChecks[0].retries: expected an "
        "integer" in stalled["message"]
    )
    assert nothing_built_or_switched(machine, before)

    fixed = commit_fleet(
        machine.repo,
        files={"pullnix.yaml": spec_yaml(machine.sandbox)},
        version="2",
        message="fleet: fix the typo",
    )
    assert machine.reconcile().returncode == 0
    assert machine.status()["status"]["lastAppliedRevision"] == fixed


def test_an_unreachable_remote_is_reported_and_the_system_stays(machine: Machine) -> None:
    before = snapshot(machine)
    machine.configure(urls=[f"file://{machine.tmp}/no-such-repo.git"])
    done = machine.reconcile()
    assert done.returncode != 0
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "SourceUnavailable")
    assert "no-such-repo.git" in ready["message"]
    assert nothing_built_or_switched(machine, before)

    machine.configure()  # the remote is back
    assert machine.reconcile().returncode == 0
    assert machine.condition("Ready")["status"] == "True"


def test_an_unsigned_commit_is_refused_when_signatures_are_required(machine: Machine) -> None:
    signers = machine.tmp / "allowed_signers"
    signers.write_text(
        "ops@example.org ssh-ed25519 "
        "AAAAC3NzaC1lZDI1NTE5AAAAIHhKZ0p3sX6m0P6vV0m5m0v0v0v0v0v0v0v0v0v0v0v0\n"
    )
    config = machine.paths.config
    config.write_text(
        config.read_text().replace("urls = [", f'allowed_signers_file = "{signers}"\nurls = [', 1)
    )
    machine.base_config = machine.paths.config.read_text()
    before = snapshot(machine)
    unsigned = commit_fleet(machine.repo, version="2")
    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "SignatureRefused")
    assert "not signed" in stalled["message"] or "unsigned" in stalled["message"]
    assert unsigned[:12] in stalled["message"]
    assert nothing_built_or_switched(machine, before)
    assert machine.status()["status"]["lastAppliedRevision"] != unsigned


def test_a_force_push_to_older_history_is_refused(machine: Machine) -> None:
    old = machine.status()["status"]["lastAppliedRevision"]
    new = commit_fleet(machine.repo, version="2")
    assert machine.reconcile().returncode == 0
    before = snapshot(machine)
    subprocess.run(
        ["git", "-C", str(machine.repo.bare), "update-ref", "refs/heads/main", old], check=True
    )
    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "DowngradeRefused")
    assert old[:12] in stalled["message"]
    assert nothing_built_or_switched(machine, before)
    assert machine.status()["status"]["lastAppliedRevision"] == new


def test_older_history_with_a_broken_spec_is_refused_as_a_downgrade_first(
    machine: Machine,
) -> None:
    old = machine.status()["status"]["lastAppliedRevision"]
    new = commit_fleet(machine.repo, version="2")
    assert machine.reconcile().returncode == 0
    before = snapshot(machine)
    # A commit on top of the older history whose spec does not load either: the
    # downgrade is the refusal named, the spec is not read for anything else.
    worktree = machine.repo.worktree
    subprocess.run(["git", "-C", str(worktree), "reset", "--quiet", "--hard", old], check=True)
    broken = spec_yaml(machine.sandbox).replace("retries: 0", "retries: lots")
    (worktree / "pullnix.yaml").write_text(broken)
    subprocess.run(
        ["git", "-C", str(worktree), "-c", "commit.gpgsign=false", "commit", "--quiet", "-am", "x"],
        check=True,
        env={**os.environ, **GIT_IDENTITY},
    )
    subprocess.run(
        [
            "git",
            "-C",
            str(worktree),
            "push",
            "--quiet",
            "--force",
            "origin",
            "HEAD:refs/heads/main",
        ],
        check=True,
    )
    done = machine.reconcile()
    assert done.returncode == 3, done.stdout + done.stderr
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "DowngradeRefused")
    assert nothing_built_or_switched(machine, before)
    assert machine.status()["status"]["lastAppliedRevision"] == new


def test_a_new_kernel_is_applied_and_the_reboot_it_needs_is_reported(machine: Machine) -> None:
    sha = commit_fleet(machine.repo, version="2", kernel="6.2.0-fixture")
    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "RebootRequired")
    assert sha[:12] in ready["message"]
    assert "reboot" in ready["message"]
