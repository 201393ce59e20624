"""Each health-check kind passing and failing, run by the real helper after a real activation."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)

pytestmark = pytest.mark.nix


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    return build_machine(
        tmp_path_factory.mktemp("helper-checks"),
        {
            "old": {"version": "1"},
            "new": {"version": "2"},
            "broken": {"version": "3", "health": "broken"},
        },
    )


@pytest.fixture(scope="module")
def http_port(machine: FakeMachine) -> Iterator[int]:
    """A real http.server on loopback serving the sandbox's health dir."""
    port = free_port()
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(machine.sandbox.health_dir),
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    ) as server:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "http.server did not come up"
                time.sleep(0.02)
        yield port
        server.terminate()


@pytest.fixture(scope="module")
def listening_port() -> Iterator[int]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        yield int(s.getsockname()[1])


def helper_for(machine: FakeMachine, tmp: Path, urls: list[str]) -> HelperProcess:
    machine.reset()
    return start_helper(write_helper_config(tmp, machine.sandbox, urls=urls))


@pytest.fixture
def helper(machine: FakeMachine, tmp_path: Path) -> Iterator[HelperProcess]:
    proc = helper_for(machine, tmp_path, [f"file://{machine.repo.bare}"])
    yield proc
    proc.stop()
    cleanup_socket_dir(proc.paths)


def run_check(
    machine: FakeMachine, helper: HelperProcess, check: dict[str, Any], system: str = "new"
) -> dict[str, Any]:
    spec = {"name": "probe", "timeout": 2, "retries": 0, "interval": 0.2, **check}
    result = helper.client.wait(
        helper.client.apply(machine.systems[system], health_checks=[spec]), timeout=60
    )
    assert len(result["checks"]) == 1
    checked: dict[str, Any] = {
        **result["checks"][0],
        "state": result["state"],
        "opMessage": result["message"],
    }
    expected = machine.systems["new" if result["state"] == "Succeeded" else "old"]
    assert machine.current() == expected
    return checked


def test_http_passes_on_expected_status_and_body(
    machine: FakeMachine, helper: HelperProcess, http_port: int
) -> None:
    got = run_check(
        machine,
        helper,
        {
            "http": {
                "url": f"http://127.0.0.1:{http_port}/status",
                "expectStatus": 200,
                "bodyRegex": "^ok$",
            }
        },
    )
    assert (got["state"], got["ok"], got["kind"]) == ("Succeeded", True, "http")
    assert got["message"].endswith("status 200")


def test_http_fails_when_the_new_generation_reports_broken(
    machine: FakeMachine, helper: HelperProcess, http_port: int
) -> None:
    got = run_check(
        machine,
        helper,
        {"http": {"url": f"http://127.0.0.1:{http_port}/status", "bodyRegex": "^ok$"}},
        system="broken",
    )
    assert (got["state"], got["ok"]) == ("RolledBack", False)
    assert "does not match '^ok$'" in got["message"]
    assert "health check 'probe' failed" in got["opMessage"]


def test_http_fails_on_an_unexpected_status(
    machine: FakeMachine, helper: HelperProcess, http_port: int
) -> None:
    got = run_check(machine, helper, {"http": {"url": f"http://127.0.0.1:{http_port}/nope"}})
    assert got["state"] == "RolledBack"
    assert "status 404, expected 200" in got["message"]


def test_tcp_passes_on_a_listening_port(
    machine: FakeMachine, helper: HelperProcess, listening_port: int
) -> None:
    got = run_check(machine, helper, {"tcp": {"host": "127.0.0.1", "port": listening_port}})
    assert (got["state"], got["kind"]) == ("Succeeded", "tcp")


def test_tcp_fails_on_a_closed_port(machine: FakeMachine, helper: HelperProcess) -> None:
    got = run_check(machine, helper, {"tcp": {"host": "127.0.0.1", "port": free_port()}})
    assert got["state"] == "RolledBack"
    assert "refused" in got["message"].lower()


def test_command_true_passes_and_false_fails(machine: FakeMachine, helper: HelperProcess) -> None:
    assert run_check(machine, helper, {"command": {"argv": ["true"]}})["state"] == "Succeeded"
    machine.reset()
    got = run_check(machine, helper, {"command": {"argv": ["false"]}})
    assert got["state"] == "RolledBack"
    assert got["message"] == "false exited 1"


def test_command_is_retried_at_its_interval(machine: FakeMachine, helper: HelperProcess) -> None:
    got = run_check(
        machine, helper, {"retries": 2, "interval": 0.1, "command": {"argv": ["false"]}}
    )
    assert got["attempts"] == 3
    assert "after 3 attempts" in got["message"]
    assert got["startedAt"] < got["finishedAt"]


def test_command_over_its_timeout_fails(machine: FakeMachine, helper: HelperProcess) -> None:
    start = time.monotonic()
    got = run_check(machine, helper, {"timeout": 0.2, "command": {"argv": ["sleep", "5"]}})
    assert got["state"] == "RolledBack"
    assert "still running after 0.2s" in got["message"]
    assert time.monotonic() - start < 4


def test_git_remote_passes_when_the_configured_remote_answers(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    got = run_check(machine, helper, {"gitRemote": {}})
    assert (got["state"], got["kind"]) == ("Succeeded", "gitRemote")
    assert got["message"] == f"file://{machine.repo.bare} answers"


def test_git_remote_fails_when_the_machine_is_cut_off(machine: FakeMachine, tmp_path: Path) -> None:
    missing = tmp_path / "gone.git"
    helper = helper_for(machine, tmp_path, [f"file://{missing}"])
    try:
        got = run_check(machine, helper, {"gitRemote": {}})
    finally:
        helper.stop()
        cleanup_socket_dir(helper.paths)
    assert got["state"] == "RolledBack"
    assert f"{missing} does not exist" in got["message"]


def test_systemd_without_systemd_says_so(machine: FakeMachine, helper: HelperProcess) -> None:
    got = run_check(machine, helper, {"systemd": {"units": ["sshd.service"]}})
    assert got["state"] == "RolledBack"
    assert "systemd is not running" in got["message"] or "systemctl not found" in got["message"]


def test_git_remote_never_shows_the_token_of_a_url(machine: FakeMachine, tmp_path: Path) -> None:
    """A token in a remote's URL must not reach the operation's message (and so the
    agent's history in status.json): it is shown as user:***@."""
    url = f"http://deploy:s3cret-token@127.0.0.1:{free_port()}/fleet.git"
    helper = helper_for(machine, tmp_path, [url])
    try:
        got = run_check(machine, helper, {"gitRemote": {}, "timeout": 5})
    finally:
        helper.stop()
        cleanup_socket_dir(helper.paths)
    assert got["state"] == "RolledBack"
    assert "deploy:***@127.0.0.1" in got["message"]
    assert "s3cret-token" not in got["message"] + got["opMessage"]
