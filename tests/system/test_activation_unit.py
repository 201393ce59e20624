"""Activation in its own transient unit, nixos-rebuild's, under real systemd: it outlives a
SIGKILLed helper, whose successor waits for it, reads its result, verifies, and commits
exactly once; and it shares nixos-rebuild's unit name, so a hand-run activation and a
pullnix apply never run at the same time, and pullnix says so instead of breaking."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.common.client import HelperClient
from reconciler.common.output import LOG_LIMIT, TAIL_LIMIT
from tests.system.container import Container
from tests.system.guestcli import (
    finished_entry,
    history,
    ready_at,
    reconcile_now,
    resolve,
    restarts,
    status,
    wait_for,
)
from tests.system.install import HELPER_UNIT, SYSTEM_PROFILE, Installed, build_generation

pytestmark = pytest.mark.system

HELPER_SOCKET = "/run/pullnix/helper.sock"
UNIT = "nixos-rebuild-switch-to-configuration.service"
HELPER_STATE = "/nix/var/pullnix/helper"


def _activation_running(box: Container) -> str | None:
    """The transient unit's description while it runs."""
    state = box.unit_property(UNIT, "ActiveState")
    sub = box.unit_property(UNIT, "SubState")
    return box.unit_property(UNIT, "Description") if (state, sub) == ("active", "running") else None


def _activation_log_path(box: Container, op_id: str) -> str:
    found = box.run(["grep", "-rl", "--", f"pullnix {op_id}:", HELPER_STATE], check=False)
    paths = found.stdout.split()
    assert paths, f"no activation log of {op_id} under {HELPER_STATE}"
    return paths[0]


def _activation_log(box: Container, op_id: str) -> str:
    return box.read_text(_activation_log_path(box, op_id))


def test_a_helper_killed_mid_activation_lets_it_finish_then_verifies_and_commits_once(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    restarts_before, helper_pid = restarts(container, HELPER_UNIT)

    revision = installed.fleet.commit("generation 2: a slow activation", switchDelay=8)
    reconcile_now(container)
    description = wait_for(
        lambda: _activation_running(container), 180, "the activation's unit running", container
    )
    assert description.startswith("pullnix ")
    container.run(["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=main", HELPER_UNIT])

    entry = finished_entry(container, revision, timeout=240)
    assert entry["result"] == "Succeeded", entry
    second = build_generation(container, installed.fleet, revision)
    assert resolve(container, SYSTEM_PROFILE) == second
    assert resolve(container, "/run/current-system") == second
    # the helper was restarted once, and its successor took the unit's result
    after, new_pid = restarts(container, HELPER_UNIT)
    assert (after, new_pid != helper_pid) == (restarts_before + 1, True)
    assert "outlived the old helper and succeeded" in container.journal(HELPER_UNIT, pid=new_pid)
    op: dict[str, Any] = HelperClient(container.host_path(HELPER_SOCKET), timeout=10).status(
        entry["operationId"]
    )["found"]
    states = [t["state"] for t in op["transitions"]]
    assert "RollingBack" not in states, states
    assert states.count("Committing") == 1, states
    assert states[-1] == "Succeeded", states
    log = _activation_log(container, entry["operationId"])
    # the trial's switch-to-configuration ran once (the commit's `boot` is its own step)
    assert log.count("switch-to-configuration test\n[started as ") == 1, log
    assert "[the helper restarted; waiting for" in log, log
    assert [e["result"] for e in history(container)] == ["Succeeded", "Succeeded"]


def test_a_hand_run_activation_holds_off_pullnix_which_says_why(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    # what `nixos-rebuild switch` does, by hand: the same unit name
    container.run(
        ["systemd-run", f"--unit={UNIT}", "--service-type=exec", "--collect", "sleep", "600"]
    )
    revision = installed.fleet.commit("generation 2", version="2")
    reconcile_now(container)

    def refused() -> str | None:
        conditions = status(container).get("status", {}).get("conditions", [])
        said = [c["message"] for c in conditions if "another activation" in c["message"]]
        return said[0] if said else None

    message = wait_for(refused, 180, "the agent reporting the other activation", container)
    assert "nixos-rebuild" in message
    assert resolve(container, "/run/current-system") == installed.system
    assert resolve(container, SYSTEM_PROFILE) == installed.system

    container.run(["systemctl", "stop", UNIT])
    reconcile_now(container)
    ready_at(container, revision, timeout=240)
    assert history(container)[0]["result"] == "Succeeded"


def test_a_hand_run_activation_during_a_pullnix_apply_is_refused_by_systemd(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    revision = installed.fleet.commit("generation 2: a slow activation", switchDelay=8)
    reconcile_now(container)
    wait_for(lambda: _activation_running(container), 180, "pullnix's activation", container)

    hand = container.run(
        ["systemd-run", f"--unit={UNIT}", "--service-type=exec", "--collect", "true"],
        check=False,
    )
    assert hand.returncode != 0
    assert "already" in hand.stderr or "exists" in hand.stderr, hand.stderr

    entry = finished_entry(container, revision, timeout=240)
    assert entry["result"] == "Succeeded", entry


def test_an_activation_that_floods_its_output_leaves_a_bounded_log(
    container: Container, installed: Installed
) -> None:
    """systemd appends the unit's output to the activation log with no bound of its own:
    64 MiB of it leave a log of about LOG_LIMIT, its first and its last words kept."""
    ready_at(container, installed.revision)
    revision = installed.fleet.commit("generation 2: a loud activation", switchOutput=64)
    reconcile_now(container)
    entry = finished_entry(container, revision, timeout=240)
    assert entry["result"] == "Succeeded", entry
    log_path = _activation_log_path(container, entry["operationId"])
    size = int(container.run(["stat", "--format=%s", log_path]).stdout)
    assert size <= LOG_LIMIT + TAIL_LIMIT + 64 * 1024, size
    log = container.read_text(log_path)
    assert "bin/switch-to-configuration test\n" in log[:4096], log[:4096]
    assert "[log truncated]" in log, log[-TAIL_LIMIT:]
    over = log.index("the flood is over")
    assert over > LOG_LIMIT
    assert "switch-to-configuration.service succeeded]" in log[over:], log[over:]
