"""The agent keeps the helper at the version its generation carries: when the helper linked
beside agent.toml (/etc/pullnix/helper on NixOS) differs from the helper's profile, a real
`pullnix agent` asks the real helper to `upgrade` once, and never while an operation runs."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from reconciler.controller.helper_upgrade import needs_asking, wanted_helper_link
from tests.support.agentmachine import Machine, fake_machine, wait_for
from tests.support.helperproc import add_to_store

pytestmark = pytest.mark.nix

ASKED = "asking the helper to upgrade itself"


def helper_package(tmp: Path, name: str, marker: Path) -> str:
    """A store path laid out like the helper's package whose bin/pullnix-helper is a Python
    script of its own (so the helper's `program` names it), noting its pid in `marker`."""
    package = tmp / name
    (package / "bin").mkdir(parents=True)
    script = package / "bin" / "pullnix-helper"
    script.write_text(
        f"#!{sys.executable}\n"
        "import os, sys\n"
        f"with open({str(marker)!r}, 'a') as f:\n"
        "    f.write(f'{os.getpid()}\\n')\n"
        "from reconciler.helper.main import main\n"
        "sys.exit(main())\n"
    )
    script.chmod(0o755)
    return add_to_store(package)


def broken_helper_package(tmp: Path) -> str:
    """A store path that looks like a helper but whose program fails (`--version` too)."""
    package = tmp / "pullnix-helper-broken"
    (package / "bin").mkdir(parents=True)
    script = package / "bin" / "pullnix-helper"
    script.write_text("#!/bin/sh\necho 'this helper is broken' >&2\nexit 1\n")
    script.chmod(0o755)
    return add_to_store(package)


def link_wanted(machine: Machine, store_path: str) -> Path:
    link = wanted_helper_link(machine.paths.config)
    link.symlink_to(store_path)
    return link


def wait_for_reexec(machine: Machine, started_at: object, timeout: float = 60) -> dict[str, object]:
    found: dict[str, object] = {}

    def reexecuted() -> bool:
        try:
            ping = machine.helper.client.ping()
        except Exception:  # re-executing: the socket comes and goes
            return False
        found.update(ping)
        return ping["startedAt"] != started_at

    wait_for(reexecuted, timeout, f"the helper to re-exec:\n{machine.helper.stderr_text()}")
    return found


def passes_now(machine: Machine, count: int) -> None:
    """`count` more passes, one after the other (each starts after the last one's upgrade look)."""
    for _ in range(count):
        done = machine.cli("reconcile", "--now", "--wait", "--timeout", "60", timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_agent_upgrades_an_idle_helper_to_the_one_its_generation_carries(
    tmp_path: Path,
) -> None:
    with fake_machine(tmp_path) as machine:
        marker = tmp_path / "ran"
        package = helper_package(tmp_path, "pullnix-helper-next", marker)
        link_wanted(machine, package)
        before = machine.helper.client.ping()
        assert before["program"] != f"{package}/bin/pullnix-helper"
        agent = machine.start_agent()
        ping = wait_for_reexec(machine, before["startedAt"])
        assert ping["pid"] == machine.helper.pid  # exec in place, not a new process
        assert ping["program"] == f"{package}/bin/pullnix-helper"
        assert os.path.realpath(machine.paths.helper_profile) == package
        runs = marker.read_text().split()  # the helper's `--version` check, then the exec
        assert runs[-1] == str(machine.helper.pid)
        passes_now(machine, 2)
        assert agent.log_text().count(ASKED) == 1, agent.log_text()
        assert marker.read_text().split() == runs  # no second upgrade
        assert "under way" in agent.log_text()


def test_a_refused_upgrade_is_asked_for_once_per_store_path(tmp_path: Path) -> None:
    with fake_machine(tmp_path) as machine:
        broken = broken_helper_package(tmp_path)
        link = link_wanted(machine, broken)
        agent = machine.start_agent()
        wait_for(
            lambda: "refused" in machine.helper.stderr_text(),
            60,
            "the helper to refuse the broken helper",
        )
        passes_now(machine, 2)
        assert agent.log_text().count(ASKED) == 1, agent.log_text()
        assert machine.helper.stderr_text().count(f"upgrade to {broken} refused") == 1
        assert not machine.paths.helper_profile.exists()  # nothing moved
        # A new generation carrying another helper is a new target: asked for, once.
        marker = tmp_path / "ran"
        package = helper_package(tmp_path, "pullnix-helper-fixed", marker)
        link.unlink()
        link.symlink_to(package)
        before = machine.helper.client.ping()
        passes_now(machine, 1)
        wait_for_reexec(machine, before["startedAt"])
        assert os.path.realpath(machine.paths.helper_profile) == package
        assert agent.log_text().count(ASKED) == 2, agent.log_text()


def test_nothing_is_asked_while_an_operation_is_in_progress(tmp_path: Path) -> None:
    with fake_machine(tmp_path) as machine:
        marker = tmp_path / "ran"
        package = helper_package(tmp_path, "pullnix-helper-next", marker)
        link_wanted(machine, package)
        before = machine.helper.client.ping()
        # The check holds the operation open until the test lets it go (a file appears),
        # however slowly this machine starts the agent and runs its first pass.
        release = tmp_path / "release"
        hold = f'while [ ! -e "{release}" ]; do sleep 0.05; done'
        slow = [{"name": "slow", "timeout": 300, "command": {"argv": ["/bin/sh", "-c", hold]}}]
        op_id = machine.helper.client.apply(
            machine.current(), revision=machine.repo.sha, health_checks=slow
        )
        agent = machine.start_agent()
        wait_for(lambda: machine.passes() >= 1, 60, "the agent's first pass")
        time.sleep(0.5)  # the look after the pass
        status = machine.helper.client.status()
        assert status["busy"], "the operation ended too soon for this test to mean anything"
        assert status["upgradePending"] is None  # never asked, so nothing queued
        assert machine.helper.client.ping()["startedAt"] == before["startedAt"]
        assert not machine.paths.helper_profile.exists()
        assert ASKED not in agent.log_text()
        release.touch()
        result = machine.helper.client.wait(op_id, timeout=60)
        assert result["state"] == "Succeeded", result["message"]
        ping = wait_for_reexec(machine, before["startedAt"])  # once it is over, it upgrades
        assert ping["pid"] == machine.helper.pid
        assert ping["program"] == f"{package}/bin/pullnix-helper"
        assert "under way" in agent.log_text()  # sent when idle, not queued behind the op
        assert machine.helper.client.status(op_id)["found"]["state"] == "Succeeded"


@pytest.mark.parametrize(
    ("wanted", "current", "asked", "expected"),
    [
        (None, "/nix/store/a", frozenset(), False),  # no wanted helper linked
        ("/nix/store/a", "/nix/store/a", frozenset(), False),  # already running it
        ("/nix/store/b", "/nix/store/a", frozenset(), True),
        ("/nix/store/b", None, frozenset(), True),  # no profile yet
        ("/nix/store/b", "/nix/store/a", frozenset({"/nix/store/b"}), False),  # asked before
    ],
)
def test_when_the_helper_is_asked_to_upgrade(
    wanted: str | None, current: str | None, asked: frozenset[str], expected: bool
) -> None:
    assert needs_asking(wanted, current, asked) is expected
