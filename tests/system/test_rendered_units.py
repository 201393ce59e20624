"""The units nix/units.nix renders, under real systemd: the agent runs as uid 399 in its
sandbox and builds through Debian's nix-daemon; the helper runs as root from its profile,
which pullnix-helper-install.service made; the tmpfiles directories have the modes the
module gives them; the helper is restarted however often it crashes, and a change of the
agent's uid by a commit does not lock the new agent out."""

from __future__ import annotations

import time
from typing import Any

import pytest

from reconciler.common.client import HelperClient
from tests.system.container import Container
from tests.system.guestcli import history, ready_at, reconcile_now, restarts, wait_for
from tests.system.install import (
    AGENT_UNIT,
    CONFIG_PATH,
    HELPER_PROFILE,
    HELPER_UNIT,
    Installed,
)

pytestmark = pytest.mark.system

HELPER_SOCKET = "/run/pullnix/helper.sock"
INSTALL_UNIT = "pullnix-helper-install.service"


def _uid_of(box: Container, pid: int) -> int:
    for line in box.read_text(f"/proc/{pid}/status").splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])
    raise AssertionError(f"no Uid line for pid {pid}")


def _stat(box: Container, path: str) -> str:
    return box.run(["stat", "--format=%a %U %G", path]).stdout.strip()


def test_the_agent_runs_unprivileged_in_its_sandbox_and_builds_through_the_daemon(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    agent_pid = container.wait_active(AGENT_UNIT)
    assert _uid_of(container, agent_pid) == 399
    assert container.unit_property(AGENT_UNIT, "User") == "pullnix"
    assert container.unit_property(AGENT_UNIT, "ProtectSystem") == "strict"
    assert container.unit_property(AGENT_UNIT, "NoNewPrivileges") == "yes"
    assert container.unit_property(AGENT_UNIT, "CapabilityBoundingSet") == ""
    # its build went through the daemon, which served the pullnix user
    assert container.unit_property("nix-daemon.socket", "ActiveState") == "active"
    assert "user pullnix" in container.journal("nix-daemon.service")
    # the helper: root, from the profile the install unit made on first boot
    helper_pid = container.wait_active(HELPER_UNIT)
    assert _uid_of(container, helper_pid) == 0
    assert container.unit_property(INSTALL_UNIT, "ActiveState") == "active"
    assert container.unit_property(INSTALL_UNIT, "Result") == "success"
    assert container.run(["readlink", "-f", HELPER_PROFILE]).stdout.strip() == installed.helper
    assert container.unit_property(HELPER_UNIT, "StartLimitIntervalUSec") == "0"
    # the tmpfiles rules: the socket dir and the helper's state dir, the agent's group reads
    assert _stat(container, "/run/pullnix") == "2750 root pullnix"
    assert _stat(container, "/nix/var/pullnix/helper") == "2750 root pullnix"
    assert _stat(container, "/var/lib/pullnix") == "750 pullnix pullnix"
    # the unit text is the rendered one: the helper's X-RestartIfChanged in [Service]
    helper_text = container.read_text(f"/etc/systemd/system/{HELPER_UNIT}")
    service = helper_text.split("[Service]", 1)[1]
    assert "X-RestartIfChanged=false" in service
    assert "/nix/store" not in helper_text


def test_the_helper_crash_looping_ten_times_is_still_restarted(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    before, pid = restarts(container, HELPER_UNIT)
    for _ in range(10):
        container.run(["systemctl", "kill", "--signal=SIGKILL", "--kill-whom=main", HELPER_UNIT])
        pid = _next_pid(container, pid)
    after, _ = restarts(container, HELPER_UNIT)
    assert after - before == 10
    client = HelperClient(container.host_path(HELPER_SOCKET), timeout=10)
    assert client.wait_until_up(30)["pid"] == container.main_pid(HELPER_UNIT)


def _next_pid(box: Container, old: int, timeout: float = 60.0) -> int:
    """The helper's main PID once it is active again under a new process."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = box.unit_property(HELPER_UNIT, "ActiveState")
        pid = int(box.unit_property(HELPER_UNIT, "MainPID") or 0)
        if state == "active" and pid not in (0, old):
            return pid
        if state == "failed":
            raise AssertionError(
                f"{HELPER_UNIT} failed: {box.unit_property(HELPER_UNIT, 'Result')}"
            )
        time.sleep(0.05)
    raise AssertionError(f"{HELPER_UNIT} was not restarted within {timeout:.0f}s")


def test_a_commit_that_changes_the_agents_uid_keeps_the_new_agent_in(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    helper_before = restarts(container, HELPER_UNIT)

    revision = installed.fleet.commit("generation 2: the agent's uid moves", agentUid=400)
    reconcile_now(container)
    doc = ready_at(container, revision, timeout=240)

    assert doc["status"]["lastAppliedRevision"] == revision
    entry = history(container)[0]
    assert (entry["revision"], entry["result"]) == (revision, "Succeeded"), entry
    assert _uid_of(container, container.wait_active(AGENT_UNIT)) == 400
    assert "agent_uids = [0, 400]" in container.read_text(CONFIG_PATH)
    # the helper took the new file without a restart, and says so
    assert restarts(container, HELPER_UNIT) == helper_before
    config: dict[str, Any] = HelperClient(container.host_path(HELPER_SOCKET), timeout=10).status()[
        "config"
    ]
    assert config["error"] is None
    wait_for(
        lambda: "machine config reloaded" in container.journal(HELPER_UNIT) or None,
        30,
        "the helper's reload in its journal",
        container,
    )
