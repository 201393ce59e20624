"""The real `pullnix agent` under real systemd, following a real git repository: it builds
each pushed commit with the container's Nix, the helper activates it (which restarts the
agent), verifies it and commits it once the new agent confirms, or rolls it back.

What is asserted is what a user sees: `pullnix status --json` and `pullnix history --json`
inside the container, the system links, and `systemctl show -p NRestarts,MainPID` of
both units (the helper is never restarted; the agent is restarted by activation only).
"""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.common.client import HelperClient, HelperError
from tests.system.container import Container
from tests.system.guestcli import (
    condition,
    finished_entry,
    history,
    ready_at,
    reconcile_now,
    resolve,
    restarts,
    status,
    wait_for,
)
from tests.system.install import (
    AGENT_UNIT,
    BOOT_DEFAULT,
    GIT_UNIT,
    HELPER_UNIT,
    SYSTEM_PROFILE,
    Installed,
    build_generation,
)

pytestmark = pytest.mark.system

HELPER_SOCKET = "/run/pullnix/helper.sock"
SYSTEM_LINKS = ("/run/current-system", SYSTEM_PROFILE, BOOT_DEFAULT)


def _converged(box: Container, installed: Installed) -> tuple[tuple[int, int], tuple[int, int]]:
    """Wait until the agent has adopted generation 1; (helper, agent) (NRestarts, MainPID)."""
    doc = ready_at(box, installed.revision)
    assert doc["status"]["currentSystem"] == installed.system
    return restarts(box, HELPER_UNIT), restarts(box, AGENT_UNIT)


def test_a_pushed_change_restarts_the_agent_by_its_own_activation_and_ends_ready(
    container: Container, installed: Installed
) -> None:
    helper_before, (agent_restarts, agent_pid) = _converged(container, installed)

    revision = installed.fleet.commit("generation 2", version="2")
    reconcile_now(container)
    doc = ready_at(container, revision)

    second = build_generation(container, installed.fleet, revision)  # built already: cached
    assert second != installed.system
    for link in SYSTEM_LINKS:
        assert resolve(container, link) == second, link
    assert doc["status"]["currentSystem"] == second
    entry = history(container)[0]
    assert (entry["revision"], entry["result"], entry["storePath"]) == (
        revision,
        "Succeeded",
        second,
    )
    assert {c["name"]: c["ok"] for c in entry["healthChecks"]} == {"git": True, "agent": True}
    # the helper lived through it all; the agent was restarted (not crashed and restarted)
    # into the new generation's unit, and that new agent is the one that confirmed
    assert restarts(container, HELPER_UNIT) == helper_before
    new_restarts, new_pid = restarts(container, AGENT_UNIT)
    assert new_pid != agent_pid
    assert new_restarts == agent_restarts
    assert f"{second}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    # Type=notify: the unit went active on the new agent's READY=1; its STATUS= follows
    wait_for(
        lambda: revision[:12] in container.unit_property(AGENT_UNIT, "StatusText") or None,
        30,
        "the agent's sd_notify status naming the revision",
        container,
    )
    confirmed = f"confirmed operation {entry['operationId']}"
    assert confirmed in container.journal(AGENT_UNIT, pid=new_pid)
    assert confirmed not in container.journal(AGENT_UNIT, pid=agent_pid)
    assert [e["result"] for e in history(container)] == ["Succeeded", "Succeeded"]


def test_a_generation_whose_agent_cannot_start_is_rolled_back_and_the_old_agent_returns(
    container: Container, installed: Installed
) -> None:
    helper_before, (_, agent_pid) = _converged(container, installed)

    revision = installed.fleet.commit(
        "generation 2: an agent that cannot start", version="2", agent="broken"
    )
    reconcile_now(container)
    entry = finished_entry(container, revision)

    assert entry["result"] == "RolledBack", entry
    assert "activation failed" in entry["message"], entry
    broken = build_generation(container, installed.fleet, revision)
    assert entry["storePath"] == broken
    for link in SYSTEM_LINKS:
        assert resolve(container, link) == installed.system, link
    # the broken agent was tried (and said why it failed); the old generation's agent is back
    assert "broken on purpose (knob agent=broken)" in container.journal(AGENT_UNIT)
    back_pid = container.wait_active(AGENT_UNIT)
    assert back_pid != agent_pid
    assert f"{installed.system}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    doc = status(container)
    assert doc["status"]["lastAppliedRevision"] == installed.revision
    assert doc["status"]["lastAttemptedRevision"] == revision
    assert doc["status"]["currentSystem"] == installed.system
    ready = condition(doc, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack"), doc
    assert [e["result"] for e in history(container)] == ["RolledBack", "Succeeded"]
    assert restarts(container, HELPER_UNIT) == helper_before


def test_a_generation_that_cuts_the_machine_off_its_git_server_fails_git_remote_and_rolls_back(
    container: Container, installed: Installed
) -> None:
    helper_before, _ = _converged(container, installed)

    revision = installed.fleet.commit(
        "generation 2: the git server moves off 127.0.0.1", version="2", gitListen="127.0.0.2"
    )
    reconcile_now(container)
    entry = finished_entry(container, revision)

    assert entry["result"] == "RolledBack", entry
    assert "health check 'git' failed" in entry["message"], entry
    checks = {c["name"]: c for c in entry["healthChecks"]}
    assert checks["git"]["ok"] is False, checks
    assert "127.0.0.1" in checks["git"]["message"], checks
    for link in SYSTEM_LINKS:
        assert resolve(container, link) == installed.system, link
    # the rollback's activation put the server back where the machine pulls from
    assert "--listen=127.0.0.1 " in container.unit_property(GIT_UNIT, "ExecStart")
    container.wait_active(GIT_UNIT)
    assert f"{installed.system}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    doc = status(container)
    assert doc["status"]["lastAppliedRevision"] == installed.revision
    ready = condition(doc, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack"), doc
    assert restarts(container, HELPER_UNIT) == helper_before


def _held_in_verifying(box: Container, installed: Installed) -> tuple[str, str, dict[str, Any]]:
    """Push a generation whose `held` check waits for /run/release-check; (its revision,
    its toplevel, the helper's operation) once the operation is Verifying and confirmed."""
    revision = installed.fleet.commit(
        "generation 2: a health check that waits", version="2", held=True
    )
    reconcile_now(box)
    helper = HelperClient(box.host_path(HELPER_SOCKET), timeout=10)

    def verifying() -> dict[str, Any] | None:
        op = helper.status().get("operation") or {}
        held = op.get("revision") == revision and op.get("state") == "Verifying"
        return op if held and op.get("confirmedAt") else None

    op = wait_for(verifying, 120, "a confirmed operation held in Verifying", box)
    return revision, build_generation(box, installed.fleet, revision), op


def test_a_power_cut_during_verifying_boots_the_old_generation_and_records_the_rollback(
    container: Container, installed: Installed
) -> None:
    _converged(container, installed)
    revision, trial, op = _held_in_verifying(container, installed)
    assert resolve(container, "/run/current-system") == trial

    container.power_cut()
    container.boot()

    for link in ("/run/booted-system", *SYSTEM_LINKS):
        assert resolve(container, link) == installed.system, link
    entry = finished_entry(container, revision)
    assert (entry["operationId"], entry["result"]) == (op["id"], "RolledBack"), entry
    found = HelperClient(container.host_path(HELPER_SOCKET), timeout=10).status(op["id"])
    states = [t["state"] for t in found["found"]["transitions"]]
    assert states.index("Verifying") < states.index("RollingBack") < states.index("RolledBack")
    assert resolve(container, "/run/current-system") == installed.system
    assert f"{installed.system}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    doc = status(container)
    assert doc["status"]["lastAppliedRevision"] == installed.revision
    assert [e["result"] for e in history(container)] == ["RolledBack", "Succeeded"]
    assert restarts(container, HELPER_UNIT)[0] == 0


def test_a_second_apply_while_one_is_in_progress_is_refused_as_busy_and_changes_nothing(
    container: Container, installed: Installed
) -> None:
    helper_before, _ = _converged(container, installed)
    first_op = history(container)[0]["operationId"]  # the agent adopting generation 1
    revision, trial, op = _held_in_verifying(container, installed)
    helper = HelperClient(container.host_path(HELPER_SOCKET), timeout=10)

    with pytest.raises(HelperError) as refused:
        helper.apply(
            installed.system,
            revision=installed.revision,
            trial=True,
            require_confirm=False,
            confirm_timeout=10,
        )

    assert refused.value.code == "busy"
    assert f"operation {op['id']} is in progress (Verifying)" in str(refused.value)
    now = helper.status()["operation"]
    assert (now["id"], now["state"], now["revision"]) == (op["id"], "Verifying", revision)
    assert resolve(container, "/run/current-system") == trial
    assert resolve(container, SYSTEM_PROFILE) == installed.system
    assert resolve(container, BOOT_DEFAULT) == installed.system

    container.run(["touch", "/run/release-check"])  # the held check passes: the trial goes on
    ready_at(container, revision)
    for link in SYSTEM_LINKS:
        assert resolve(container, link) == trial, link
    assert [(e["operationId"], e["result"]) for e in history(container)] == [
        (op["id"], "Succeeded"),
        (first_op, "Succeeded"),
    ]
    assert restarts(container, HELPER_UNIT) == helper_before


def test_a_generation_whose_agent_runs_but_never_confirms_is_rolled_back_by_the_dead_man_switch(
    container: Container, installed: Installed
) -> None:
    helper_before, _ = _converged(container, installed)

    revision = installed.fleet.commit(
        "generation 2: the agent walled off from the helper",
        version="2",
        agent="walled-off",
        confirm_timeout="8s",
    )
    reconcile_now(container)
    entry = finished_entry(container, revision)

    assert entry["result"] == "RolledBack", entry
    assert "did not confirm within 8s" in entry["message"], entry
    # it started (Type=notify: READY=1 came) and its unit passed the health check
    assert {c["name"]: c["ok"] for c in entry["healthChecks"]} == {"git": True, "agent": True}
    walled = build_generation(container, installed.fleet, revision)
    for link in SYSTEM_LINKS:
        assert resolve(container, link) == installed.system, link
    assert f"{installed.system}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    assert container.unit_property(AGENT_UNIT, "InaccessiblePaths") == ""
    assert entry["storePath"] == walled
    assert status(container)["status"]["lastAppliedRevision"] == installed.revision
    assert restarts(container, HELPER_UNIT) == helper_before
