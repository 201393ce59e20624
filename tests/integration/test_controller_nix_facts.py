"""What the Nix driver learns reaches the machine and the status, via `pullnix reconcile --once`.

Real git, real Nix (the fixture), the real helper process: retention of old
generations after commits, a switch turned into a boot by differing switch
inhibitors, the closure diff in the history, and the GC roots of builds that
were abandoned.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from reconciler.nix.build import BuildSettings, held_roots
from reconciler.nix.observe import list_generations
from tests.support.agentmachine import Machine, fake_machine, spec_yaml
from tests.support.helperproc import start_helper
from tests.support.nixfixture import boot_into, commit_fleet, read_calls

pytestmark = pytest.mark.nix


@contextmanager
def machine_keeping(tmp_path: Path, keep: int) -> Iterator[Machine]:
    """A fake machine whose helper runs with `[system] keep_generations = keep`."""
    with fake_machine(tmp_path) as machine:
        machine.helper.stop()
        text = machine.paths.config.read_text()
        marker = "\n\n[helper]"
        assert "[system]" in text
        assert marker in text
        machine.base_config = machine.base_config.replace(
            marker, f"\nkeep_generations = {keep}{marker}", 1
        )
        machine.configure()
        machine.helper = start_helper(machine.paths)
        try:
            yield machine
        finally:
            machine.helper.stop()


def generations(machine: Machine) -> dict[int, str]:
    return {g.number: g.store_path for g in list_generations(machine.sandbox.profile)}


def test_old_generations_are_deleted_after_commits_keeping_the_booted_and_current(
    tmp_path: Path,
) -> None:
    with machine_keeping(tmp_path, keep=2) as machine:
        booted = str(machine.sandbox.booted_system.resolve())
        assert generations(machine) == {1: booted}
        assert machine.reconcile().returncode == 0  # adopts the installed commit
        deployed = []
        for version in ("2", "3", "4", "5"):
            sha = commit_fleet(machine.repo, version=version)
            done = machine.reconcile()
            assert done.returncode == 0, done.stderr
            deployed.append(machine.built(sha))

        left = generations(machine)
        numbers = sorted(left)
        # generation 1 is the booted system; the newest two are kept; the rest are gone
        assert numbers[0] == 1
        assert left[1] == booted
        assert len(numbers) == 3
        assert [left[n] for n in numbers[1:]] == deployed[-2:]
        assert machine.current() == deployed[-1]
        assert machine.status()["status"]["currentGeneration"] == numbers[-1]
        newest = machine.status()["status"]["history"][0]
        assert newest["result"] == "Succeeded"
        assert re.search(
            r"deleted old generations [\d, ]+ \(keep_generations = 2; also "
            r"kept 1 \(booted\)\)",
            newest["message"],
        ), newest["message"]


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as machine:
        yield machine


def test_differing_switch_inhibitors_install_for_the_next_boot_and_say_so(
    machine: Machine,
) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    calls = len(read_calls(machine.sandbox))
    sha = commit_fleet(machine.repo, version="2", inhibitors="dbus-broker")
    new = machine.built(sha)

    done = machine.reconcile()
    assert done.returncode == 0, done.stderr
    # nothing activated live (a trial `test` is what the inhibitors forbid): only `boot`
    # (run to activate, and again as the helper commits: both only set the boot default)
    assert {(c["action"], c["toplevel"]) for c in read_calls(machine.sandbox)[calls:]} == {
        ("boot", new)
    }
    calls = len(read_calls(machine.sandbox))
    assert machine.current() == before
    assert str(machine.sandbox.profile.resolve()) == new
    status = machine.status()["status"]
    assert status["lastAppliedRevision"] == sha
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "SwitchInhibited")
    assert f"applied revision {sha[:12]} for the next boot" in ready["message"]
    assert "running: none; new: dbus-broker" in ready["message"]
    entry = status["history"][0]
    assert (entry["result"], entry["revision"]) == ("Succeeded", sha)
    assert entry["message"].startswith("SwitchInhibited: the switch inhibitors differ")

    # a second pass neither redeploys nor calls the boot drift
    assert machine.reconcile().returncode == 0
    assert len(read_calls(machine.sandbox)) == calls
    assert machine.condition("Ready")["reason"] == "SwitchInhibited"

    boot_into(machine.sandbox)  # the reboot: now the new system runs
    assert machine.reconcile().returncode == 0
    assert machine.current() == new
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "Succeeded")
    assert len(read_calls(machine.sandbox)) == calls


def test_strategy_boot_installs_for_the_next_boot_without_a_trial_or_a_rollback(
    machine: Machine,
) -> None:
    """With `strategy.action: boot` nothing runs the new system before the reboot: the
    helper is asked for no trial, no health checks (they would check the old system; here
    its health file does not even exist) and no confirmation (no agent runs in the new
    system to give one), so the deploy is not rolled back."""
    spec = spec_yaml(machine.sandbox, confirm_timeout="1s") + "  strategy: {action: boot}\n"
    commit_fleet(machine.repo, files={"pullnix.yaml": spec}, message="fleet: boot only")
    assert machine.reconcile().returncode == 0
    before, calls = machine.current(), len(read_calls(machine.sandbox))
    sha = commit_fleet(machine.repo, version="2")
    new = machine.built(sha)

    done = machine.reconcile()
    assert done.returncode == 0, done.stdout + done.stderr
    assert {c["action"] for c in read_calls(machine.sandbox)[calls:]} == {"boot"}
    assert machine.current() == before
    assert os.readlink(machine.sandbox.boot_default) == new
    entry = machine.status()["status"]["history"][0]
    assert (entry["revision"], entry["result"]) == (sha, "Succeeded")
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("True", "RebootRequired")
    assert "next boot" in ready["message"] or "reboot" in ready["message"]


def test_the_closure_diff_reaches_the_history_entry(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    sha = commit_fleet(machine.repo, version="2")
    assert machine.reconcile().returncode == 0
    entry = machine.status()["status"]["history"][0]
    assert (entry["result"], entry["revision"]) == ("Succeeded", sha)
    assert entry["closureDiff"] is not None
    # Nix splits the name at the first "-<digit>": the fixture's "edge-01-1" is version "01-1"
    assert "nixos-system-edge: 01-1 \u2192 01-2" in entry["closureDiff"], entry["closureDiff"]


def gc_roots(machine: Machine) -> dict[Path, str]:
    return held_roots(BuildSettings(gcroots_dir=machine.tmp / "agent-state" / "gcroots"))


def test_a_build_abandoned_by_a_gate_refusal_is_not_held_alive(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    gate = '  gates:\n    - name: policy\n      command: {argv: ["/bin/false"]}\n'
    sha = commit_fleet(
        machine.repo, version="2", files={"pullnix.yaml": spec_yaml(machine.sandbox, gates=gate)}
    )
    done = machine.reconcile()
    assert done.returncode == 3
    assert machine.condition("Stalled")["reason"] == "GateRefused"
    refused = machine.built(sha)  # (built again by hand: the same path)
    assert refused not in gc_roots(machine).values()
    assert gc_roots(machine) == {}


def test_a_root_left_by_an_interrupted_pass_is_released_when_the_helper_is_idle(
    machine: Machine,
) -> None:
    assert machine.reconcile().returncode == 0
    sha = commit_fleet(machine.repo, version="2")
    leftover = machine.tmp / "agent-state" / "gcroots" / f"system-edge-01-{sha}"
    leftover.parent.mkdir(parents=True, exist_ok=True)
    leftover.symlink_to(machine.built(sha))  # as a pass killed between build and apply leaves
    commit_fleet(machine.repo, version="3", fail_build=True)
    done = machine.reconcile()
    assert done.returncode == 3
    assert machine.condition("Stalled")["reason"] == "BuildFailed"
    assert gc_roots(machine) == {}
