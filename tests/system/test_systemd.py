"""Real systemd in a container: the helper runs from its own profile, a generation's switch
restarts the agent and never the helper, and a power cut leaves a machine that comes back."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from reconciler.common.client import HelperClient
from tests.system.container import Container
from tests.system.guestcli import ready_at
from tests.system.install import (
    AGENT_UNIT,
    GIT_UNIT,
    HELPER_PROFILE,
    HELPER_UNIT,
    Installed,
    build_generation,
    install_agent_package,
)

pytestmark = pytest.mark.system


def _ping(box: Container) -> dict[str, Any]:
    """The helper's `ping`, with its own client, from the host through the container's root."""
    return HelperClient(box.host_path("/run/pullnix/helper.sock"), timeout=10).request("ping")


def _wait_journal(box: Container, unit: str, pid: int, timeout: float = 30.0) -> str:
    """What process `pid` of `unit` has logged in this boot, once it has logged something."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = box.journal(unit, pid=pid)
        if text.strip():
            return text
        time.sleep(0.1)
    raise AssertionError(f"{unit} (pid {pid}) logged nothing in {timeout}s")


def test_the_container_boots_with_systemd_as_pid_1(container: Container) -> None:
    assert container.read_text("/proc/1/comm").strip() == "systemd"
    state = container.run(["systemctl", "is-system-running"], check=False).stdout.strip()
    assert state in ("running", "degraded"), state
    assert container.run(["systemctl", "is-active", "dbus.socket"]).stdout.strip() == "active"
    assert container.run(["nix-store", "--version"]).stdout.startswith("nix-store (Nix)")


def test_the_helper_starts_from_its_profile_and_answers_ping(
    container: Container, installed: Installed
) -> None:
    pid = container.wait_active(HELPER_UNIT)
    exec_start = container.unit_property(HELPER_UNIT, "ExecStart")
    assert f"path={HELPER_PROFILE}/bin/pullnix-helper" in exec_start
    # python3 runs the profile's wrapper: the path in the unit, never a store path
    argv = container.read_text(f"/proc/{pid}/cmdline").split("\0")
    assert f"{HELPER_PROFILE}/bin/pullnix-helper" in argv, argv
    profile = container.run(["readlink", "-f", HELPER_PROFILE]).stdout.strip()
    assert profile == installed.helper

    answer = _ping(container)
    assert answer["ok"] is True
    assert answer["pid"] == pid


def test_a_generations_switch_restarts_the_agent_and_leaves_the_helper_running(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)  # the agent has adopted generation 1: no op runs
    helper_pid = container.wait_active(HELPER_UNIT)
    old_agent_pid = container.wait_active(AGENT_UNIT)
    git_pid = container.wait_active(GIT_UNIT)

    revision = installed.fleet.commit("generation 2", version="2")
    second = build_generation(container, installed.fleet, revision)
    switched = container.run([f"{second}/bin/switch-to-configuration", "test"])

    # Only the agent's unit text differs (it names the toplevel): the git server's and the
    # helper's do not, and the helper's says X-RestartIfChanged=false besides.
    assert switched.stdout.splitlines() == [f"restarted: {AGENT_UNIT}"]
    assert container.read_text(f"{second}/etc/systemd/system/{HELPER_UNIT}") == (
        container.read_text(f"{installed.system}/etc/systemd/system/{HELPER_UNIT}")
    )
    new_agent_pid = container.wait_active(AGENT_UNIT)
    assert new_agent_pid != old_agent_pid
    assert f"{second}/sw/bin/pullnix" in container.unit_property(AGENT_UNIT, "ExecStart")
    assert container.main_pid(HELPER_UNIT) == helper_pid
    assert container.unit_property(HELPER_UNIT, "NRestarts") == "0"
    assert container.main_pid(GIT_UNIT) == git_pid


def test_after_a_power_cut_the_helper_comes_back_and_its_journal_is_readable(
    container: Container, installed: Installed
) -> None:
    helper_pid = container.wait_active(HELPER_UNIT)
    container.wait_active(AGENT_UNIT)
    boot_before = container.read_text("/proc/sys/kernel/random/boot_id").strip()
    logged = _wait_journal(container, HELPER_UNIT, helper_pid)

    container.power_cut()
    container.boot()

    assert container.read_text("/proc/sys/kernel/random/boot_id").strip() != boot_before
    new_pid = container.wait_active(HELPER_UNIT)
    assert container.run(["readlink", "-f", HELPER_PROFILE]).stdout.strip() == installed.helper
    assert _ping(container)["pid"] == new_pid

    boots = container.run(["journalctl", "--list-boots", "--no-pager"]).stdout
    assert len(boots.strip().splitlines()) >= 2, boots
    assert container.journal(HELPER_UNIT, boot=-1, pid=helper_pid).startswith(logged)
    assert _wait_journal(container, HELPER_UNIT, new_pid)


def test_the_full_package_runs_on_the_containers_python_from_host_made_wheels(
    container: Container, pullnix_wheel: Path
) -> None:
    pullnix = install_agent_package(container, pullnix_wheel)
    python = str(Path(pullnix).with_name("python"))
    every_module = (
        "import importlib, pkgutil, reconciler\n"
        "names = [m.name for m in pkgutil.walk_packages(reconciler.__path__, 'reconciler.')\n"
        "         if not m.name.endswith('__main__')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    assert int(container.run([python, "-c", every_module]).stdout) > 10
    schema = json.loads(container.run([pullnix, "schema"]).stdout)
    assert "NixOSDeployment" in json.dumps(schema)
