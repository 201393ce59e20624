"""Real systemd in a container: the helper runs from its own profile, activation restarts
the agent and never the helper, and a power cut leaves a machine that comes back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.system.container import Container
from tests.system.install import (
    AGENT_UNIT,
    CONFIG_PATH,
    HELPER_PROFILE,
    HELPER_UNIT,
    STANDIN_RECORD,
    Installed,
    add_generation,
    install_agent_package,
)

pytestmark = pytest.mark.system


def _standin_record(box: Container) -> dict[str, object]:
    record: dict[str, object] = json.loads(box.read_text(STANDIN_RECORD))
    return record


def _wait_standin(box: Container, pid: int, timeout: float = 30.0) -> dict[str, object]:
    """The stand-in agent's record once the process `pid` has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = box.run(["cat", STANDIN_RECORD], check=False)
        if found.returncode == 0 and json.loads(found.stdout).get("pid") == pid:
            return _standin_record(box)
        time.sleep(0.1)
    raise AssertionError(f"the stand-in agent (pid {pid}) wrote no record in {timeout}s:\n"
                         f"{box.journal(AGENT_UNIT)}")


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
        container: Container, installed: Installed) -> None:
    pid = container.wait_active(HELPER_UNIT)
    exec_start = container.unit_property(HELPER_UNIT, "ExecStart")
    assert f"path={HELPER_PROFILE}/bin/pullnix-helper" in exec_start
    # python3 runs the profile's wrapper: the path in the unit, never a store path
    argv = container.read_text(f"/proc/{pid}/cmdline").split("\0")
    assert f"{HELPER_PROFILE}/bin/pullnix-helper" in argv, argv
    profile = container.run(["readlink", "-f", HELPER_PROFILE]).stdout.strip()
    assert profile == installed.helper

    answer = json.loads(container.run(
        [f"{installed.first.agent}/bin/pullnix-agent-standin", "ping", "--config", CONFIG_PATH],
    ).stdout)
    assert answer["ok"] is True
    assert answer["pid"] == pid


def test_activation_restarts_the_agent_and_leaves_the_helper_running(
        container: Container, installed: Installed) -> None:
    helper_pid = container.wait_active(HELPER_UNIT)
    old_agent_pid = container.wait_active(AGENT_UNIT)
    before = _wait_standin(container, old_agent_pid)
    assert before["generation"] == "1"
    assert before["helperPid"] == helper_pid

    second = add_generation(container, 2)
    switched = container.run([f"{second.system}/bin/switch-to-configuration", "test"])

    assert switched.stdout.splitlines() == [f"restarted: {AGENT_UNIT}"]
    assert container.read_text(f"{second.system}/etc/systemd/system/{HELPER_UNIT}") == (
        container.read_text(f"{installed.first.system}/etc/systemd/system/{HELPER_UNIT}"))
    new_agent_pid = container.wait_active(AGENT_UNIT)
    assert new_agent_pid != old_agent_pid
    after = _wait_standin(container, new_agent_pid)
    assert after["generation"] == "2"
    assert after["storePath"] == second.agent
    assert after["helperPid"] == helper_pid
    assert container.main_pid(HELPER_UNIT) == helper_pid
    assert container.unit_property(HELPER_UNIT, "NRestarts") == "0"


def test_after_a_power_cut_the_helper_comes_back_and_its_journal_is_readable(
        container: Container, installed: Installed) -> None:
    helper_pid = container.wait_active(HELPER_UNIT)
    container.wait_active(AGENT_UNIT)
    boot_before = container.read_text("/proc/sys/kernel/random/boot_id").strip()
    logged = _wait_journal(container, HELPER_UNIT, helper_pid)

    container.power_cut()
    container.boot()

    assert container.read_text("/proc/sys/kernel/random/boot_id").strip() != boot_before
    new_pid = container.wait_active(HELPER_UNIT)
    assert container.run(["readlink", "-f", HELPER_PROFILE]).stdout.strip() == installed.helper
    answer = json.loads(container.run(
        [f"{installed.first.agent}/bin/pullnix-agent-standin", "ping", "--config", CONFIG_PATH],
    ).stdout)
    assert answer["pid"] == new_pid

    boots = container.run(["journalctl", "--list-boots", "--no-pager"]).stdout
    assert len(boots.strip().splitlines()) >= 2, boots
    assert container.journal(HELPER_UNIT, boot=-1, pid=helper_pid).startswith(logged)
    assert _wait_journal(container, HELPER_UNIT, new_pid)


def test_the_full_package_runs_on_the_containers_python_from_host_made_wheels(
        container: Container, pullnix_wheel: Path) -> None:
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
