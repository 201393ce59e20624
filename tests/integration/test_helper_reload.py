"""The real helper re-reads agent.toml when it changes, as activation swaps the file under it.

A new `agent_uids` admits the new agent at once (the uid-change lockout of issue 16); a new
`keep_generations` governs the next commit's retention; an invalid file is refused, the old
config stays in force, and the reason is in the helper's status until a valid file comes.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import status_validator
from tests.support.agentmachine import PULLNIX, fake_machine
from tests.support.helperproc import (
    FakeMachine,
    HelperPaths,
    HelperProcess,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.peer import NOBODY, as_nobody, open_to_everyone

pytestmark = pytest.mark.nix

PING = b'{"v": 1, "op": "ping"}\n'


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    tmp = tmp_path_factory.mktemp("helper-reload")
    return build_machine(
        tmp, {"old": {"version": "1"}, "new": {"version": "2"}, "newer": {"version": "3"}}
    )


@pytest.fixture
def helper(machine: FakeMachine, tmp_path: Path) -> Iterator[HelperProcess]:
    machine.reset()
    proc = start_helper(write_helper_config(tmp_path, machine.sandbox, agent_uids=[0]))
    open_to_everyone(proc.paths.socket)
    yield proc
    proc.stop()
    cleanup_socket_dir(proc.paths)


def swap_config(paths: HelperPaths, text: str) -> None:
    """Replace agent.toml the way a NixOS switch does: a new file renamed over the old."""
    new = paths.config.with_name("agent.toml.new")
    new.write_text(text)
    os.rename(new, paths.config)


def rewritten(paths: HelperPaths, **changes: str) -> str:
    """The config text with `old=new` line substitutions (each must apply once)."""
    text = paths.config.read_text()
    for old, new in changes.items():
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def eventually(condition: Callable[[], Any], timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "condition not met before the deadline"
        time.sleep(0.1)


def test_a_new_agent_uid_is_admitted_without_a_restart(helper: HelperProcess) -> None:
    refused = as_nobody(helper.paths.socket, PING)
    assert refused["error"] == "forbidden", refused
    before = helper.client.status()["config"]
    assert before["error"] is None

    swap_config(
        helper.paths, rewritten(helper.paths, **{"agent_uids = [0]": f"agent_uids = [0, {NOBODY}]"})
    )

    answer = eventually(lambda: (a := as_nobody(helper.paths.socket, PING)).get("ok") and a)
    assert answer["pid"] == helper.pid  # the same process: no restart
    after = helper.client.status()["config"]
    assert after["loadedAt"] > before["loadedAt"]
    assert after["error"] is None
    assert "machine config reloaded" in helper.stderr_text()

    # ...and taken away again the same way.
    swap_config(
        helper.paths, rewritten(helper.paths, **{f"agent_uids = [0, {NOBODY}]": "agent_uids = [0]"})
    )
    eventually(lambda: as_nobody(helper.paths.socket, PING).get("error") == "forbidden")


def test_a_new_keep_generations_governs_the_next_commit(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    first = helper.client.wait(helper.client.apply(machine.systems["new"], trial=False), 300)
    assert first["state"] == "Succeeded", first
    assert "deleted old generations" not in first["message"]  # the default keeps 10

    booted = f'booted_system = "{machine.sandbox.booted_system}"'
    swap_config(
        helper.paths, rewritten(helper.paths, **{booted: booted + "\nkeep_generations = 1"})
    )
    eventually(lambda: "keep_generations 1" in helper.stderr_text())

    second = helper.client.wait(helper.client.apply(machine.systems["newer"], trial=False), 300)
    assert second["state"] == "Succeeded", second
    # Generation 1 is the booted one and stays; generation 2 goes, as keep 1 says.
    assert "deleted old generations 2 (keep_generations = 1" in second["message"], second


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        (("agent_uids = [0]", "agent_uids = [0, 65534\n"), "not valid TOML"),
        (("agent_uids = [0]", 'agent_uids = "everyone"'), "agent_uids"),
        (("[helper]", "[helper]\nagent_uid = [65534]"), "agent_uid"),
    ],
    ids=["syntax", "type", "typo"],
)
def test_an_invalid_config_is_refused_and_the_old_one_stays(
    helper: HelperProcess, broken: tuple[str, str], named: str
) -> None:
    old, new = broken
    good = helper.paths.config.read_text()
    swap_config(helper.paths, rewritten(helper.paths, **{old: new}))

    refusal = eventually(lambda: helper.client.status()["config"]["error"])
    assert named in refusal
    assert str(helper.paths.config) in refusal
    assert "refused, the old one stays" in helper.stderr_text()
    # The old config is still in force: root is served, nobody is still refused.
    assert helper.client.status()["ok"] is True
    assert as_nobody(helper.paths.socket, PING)["error"] == "forbidden"

    swap_config(helper.paths, good.replace("agent_uids = [0]", f"agent_uids = [0, {NOBODY}]"))
    eventually(lambda: helper.client.status()["config"]["error"] is None)
    assert as_nobody(helper.paths.socket, PING)["ok"] is True


def test_a_moved_socket_waits_for_a_restart_and_the_rest_takes_effect(
    helper: HelperProcess, tmp_path: Path
) -> None:
    socket_line = f'socket = "{helper.paths.socket}"'
    moved = tmp_path / "elsewhere.sock"
    swap_config(
        helper.paths,
        rewritten(
            helper.paths,
            **{
                socket_line: f'socket = "{moved}"',
                "agent_uids = [0]": f"agent_uids = [0, {NOBODY}]",
            },
        ),
    )
    eventually(lambda: as_nobody(helper.paths.socket, PING).get("ok"))
    config = helper.client.status()["config"]
    assert config["waitingForRestart"] == ["helper.socket"]
    assert config["error"] is None
    assert not moved.exists()


def test_the_agents_status_says_why_the_helper_refused_its_config(tmp_path: Path) -> None:
    """The helper may refuse a file the agent accepts: a new generation's agent knows a key
    the helper it has not upgraded yet does not. Here the helper's file has a typo while the
    agent reads a good copy; `pullnix status` carries the helper's reason, fitting the CRD."""
    with fake_machine(tmp_path) as machine:
        agent_config = tmp_path / "agent-view.toml"
        agent_config.write_text(machine.paths.config.read_text())

        def pullnix(*args: str) -> subprocess.CompletedProcess[str]:
            argv = [str(PULLNIX), "--config", str(agent_config), *args]
            return subprocess.run(argv, capture_output=True, text=True, timeout=180, check=False)

        good = machine.paths.config.read_text()
        swap_config(machine.paths, good.replace("[helper]", "[helper]\nagent_uid = [1]"))
        eventually(lambda: machine.helper.client.status()["config"]["error"])

        done = pullnix("reconcile", "--once", "--timeout", "120")
        assert done.returncode == 0, done.stderr
        status = json.loads(pullnix("status", "--json").stdout)["status"]
        assert "agent_uid" in status["helperConfigError"]
        assert list(status_validator().iter_errors(status)) == []
        shown = pullnix("status").stdout
        assert "Helper config" in shown
        assert "REFUSED" in shown

        swap_config(machine.paths, good)
        eventually(lambda: machine.helper.client.status()["config"]["error"] is None)
        assert pullnix("reconcile", "--once", "--timeout", "120").returncode == 0
        status = json.loads(pullnix("status", "--json").stdout)["status"]
        assert status["helperConfigError"] is None
        assert "Helper config" not in pullnix("status").stdout
