"""Every bad request gets a clear error from the real helper and changes nothing; peers checked;
two applies sent at the same moment: one runs, the other is told the helper is busy."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import threading
from pathlib import Path

import pytest

from reconciler.common.client import HelperClient
from reconciler.common.records import read_committed
from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    add_to_store,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.nixfixture import read_calls
from tests.support.peer import NOBODY, as_nobody, open_to_everyone

pytestmark = pytest.mark.nix


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    tmp = tmp_path_factory.mktemp("helper-requests")
    built = build_machine(
        tmp, {"old": {"version": "1"}, "new": {"version": "2"}, "newer": {"version": "3"}}
    )
    escape = tmp / "nixos-system-escape"
    escape.symlink_to("/etc")
    return FakeMachine(
        built.sandbox,
        built.repo,
        {**built.systems, "escape": add_to_store(escape)},
        built.revisions,
    )


def line(**message: object) -> bytes:
    return json.dumps(message).encode() + b"\n"


def apply(**fields: object) -> bytes:
    return line(v=1, op="apply", **fields)


HASH = "0" * 32
BAD = {
    "not JSON": (b"{nope\n", "bad-json", "not JSON"),
    "not an object": (b"[1, 2]\n", "bad-json", "must be a JSON object"),
    "over 64 KiB": (
        b'{"v":1,"op":"ping","pad":"' + b"a" * 70_000 + b'"}\n',
        "too-large",
        "over 65536 bytes",
    ),
    "no version": (line(op="ping"), "bad-version", "speaks v1"),
    "a future version": (line(v=2, op="ping"), "bad-version", "speaks v1"),
    "unknown op": (line(v=1, op="shutdown"), "unknown-op", "unknown op 'shutdown'"),
    "reboot without a store path": (line(v=1, op="reboot"), "bad-field", "storePath: required"),
    "reboot outside systemd": (
        line(v=1, op="reboot", storePath="{new}"),
        "nothing-to-do",
        "systemd is not PID 1 here",
    ),
    "unknown field": (line(v=1, op="ping", force=True), "unknown-field", "force"),
    "unknown apply field": (apply(storePath="{new}", dryRun=True), "unknown-field", "dryRun"),
    "no store path": (apply(revision="r"), "bad-field", "storePath: required"),
    "wrong type": (
        apply(storePath="{new}", trial="yes"),
        "bad-field",
        "trial: expected true or false, got str",
    ),
    "duration as a string": (
        apply(storePath="{new}", confirmTimeout="5s"),
        "bad-field",
        "confirmTimeout: expected a number of seconds from 0 to 86400",
    ),
    "unknown action": (
        apply(storePath="{new}", action="reboot"),
        "bad-field",
        "action 'reboot' is not one of",
    ),
    "two check kinds": (
        apply(
            storePath="{new}",
            healthChecks=[
                {"name": "x", "tcp": {"host": "h", "port": 1}, "command": {"argv": ["true"]}}
            ],
        ),
        "bad-field",
        "exactly one of",
    ),
    "unknown check field": (
        apply(
            storePath="{new}",
            healthChecks=[{"name": "x", "command": {"argv": ["true"], "shell": True}}],
        ),
        "unknown-field",
        "shell",
    ),
    "bad traceparent": (apply(storePath="{new}", traceparent="abc"), "bad-field", "W3C"),
    "outside the store": (apply(storePath="/etc"), "bad-store-path", "not under /nix/store"),
    "dot-dot": (apply(storePath=f"/nix/store/{HASH}-x/../../etc"), "bad-store-path", "'..'"),
    "below a store path": (apply(storePath="{new}/bin"), "bad-store-path", "not a store path"),
    "missing": (
        apply(storePath=f"/nix/store/{HASH}-nixos-system-gone"),
        "bad-store-path",
        "does not exist",
    ),
    "symlink escaping the store": (
        apply(storePath="{escape}"),
        "bad-store-path",
        "resolves to /etc",
    ),
    "no switch-to-configuration": (
        apply(storePath="{kernel}"),
        "bad-store-path",
        "no executable bin/switch-to-configuration",
    ),
    "upgrade without pullnix-helper": (
        line(v=1, op="upgrade", storePath="{new}"),
        "bad-store-path",
        "no executable bin/pullnix-helper",
    ),
    "confirm naming nothing": (line(v=1, op="confirm"), "bad-field", "give revision"),
}


@pytest.mark.parametrize(("message", "code", "says"), BAD.values(), ids=list(BAD))
def test_bad_request_is_refused_and_changes_nothing(
    machine: FakeMachine, helper: HelperProcess, message: bytes, code: str, says: str
) -> None:
    kernel = os.path.realpath(Path(machine.systems["new"]) / "kernel")
    message = (
        message.replace(b"{new}", machine.systems["new"].encode())
        .replace(b"{escape}", machine.systems["escape"].encode())
        .replace(b"{kernel}", kernel.encode())
    )
    answer = helper.client.raw(message)
    assert answer["v"] == 1
    assert answer["ok"] is False
    assert answer["error"] == code
    assert says in answer["message"]
    status = helper.client.status()
    assert (status["busy"], status["recent"]) == (False, [])
    assert read_calls(machine.sandbox) == []
    assert machine.current() == machine.systems["old"]
    assert helper.proc.poll() is None


def test_connection_carries_several_requests(helper: HelperProcess) -> None:
    with socket.socket(socket.AF_UNIX) as conn:
        conn.connect(str(helper.paths.socket))
        conn.sendall(line(v=1, op="ping") + b"garbage\n" + line(v=1, op="status"))
        with conn.makefile("rb") as reader:
            answers = [json.loads(reader.readline()) for _ in range(3)]
    assert [a["ok"] for a in answers] == [True, False, True]
    assert answers[1]["error"] == "bad-json"


def test_peer_not_root_nor_agent_is_forbidden_and_logged(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    open_to_everyone(helper.paths.socket)
    answer = as_nobody(helper.paths.socket, apply(storePath=machine.systems["new"]))
    assert answer.get("ok") is False, answer
    assert answer["error"] == "forbidden"
    assert "uid 65534" in str(answer["message"])
    assert "refused a peer" in helper.stderr_text()
    assert "uid 65534" in helper.stderr_text()
    assert helper.client.status()["recent"] == []
    assert read_calls(machine.sandbox) == []


def test_agent_uid_is_allowed(machine: FakeMachine, tmp_path: Path) -> None:
    paths = write_helper_config(tmp_path, machine.sandbox, agent_uids=[NOBODY])
    helper = start_helper(paths)
    try:
        open_to_everyone(helper.paths.socket)
        answer = as_nobody(paths.socket, line(v=1, op="ping"))
        assert answer["ok"] is True, answer
        assert answer["pid"] == helper.pid
    finally:
        helper.stop()
        cleanup_socket_dir(paths)


def test_socket_is_group_only_and_a_stale_one_is_replaced(
    machine: FakeMachine, tmp_path: Path
) -> None:
    paths = write_helper_config(tmp_path, machine.sandbox)
    first = start_helper(paths)
    first.kill()  # SIGKILL leaves the socket file behind
    assert paths.socket.exists()
    second = start_helper(paths)
    try:
        assert paths.socket.stat().st_mode & 0o777 == 0o660
        assert HelperClient(paths.socket).ping()["pid"] == second.pid
        third = start_helper(paths, wait=False)
        assert third.wait_exit(10) == 1  # a live helper is never displaced
        assert "another helper is listening" in third.stderr_text()
    finally:
        second.stop()
        cleanup_socket_dir(paths)


def race(sock: Path, messages: dict[str, bytes]) -> dict[str, dict[str, object]]:
    """Send each message on its own connection, all at the same moment; the answers."""
    barrier = threading.Barrier(len(messages))
    answers: dict[str, dict[str, object]] = {}

    def send(name: str) -> None:
        with socket.socket(socket.AF_UNIX) as conn:
            conn.settimeout(10)
            conn.connect(str(sock))  # connected (and accepted) before anyone sends
            barrier.wait(timeout=10)
            conn.sendall(messages[name])
            with conn.makefile("rb") as reader:
                answers[name] = json.loads(reader.readline())

    threads = [threading.Thread(target=send, args=(name,)) for name in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert sorted(answers) == sorted(messages), answers
    return answers


def test_two_applies_at_the_same_moment_one_runs_the_other_is_busy(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    contenders = ("new", "newer")
    for round_ in range(3):
        machine.reset()
        before = [e.store_path for e in read_committed(helper.paths.state_dir)]
        # requireConfirm holds the winner in Verifying until we confirm: no timing involved
        answers = race(
            helper.paths.socket,
            {
                name: apply(
                    storePath=machine.systems[name],
                    revision=machine.revisions[name],
                    trial=False,
                    requireConfirm=True,
                    confirmTimeout=60,
                )
                for name in contenders
            },
        )
        winners = [name for name in contenders if answers[name]["ok"]]
        assert len(winners) == 1, answers
        winner, loser = winners[0], next(n for n in contenders if n != winners[0])
        op_id = answers[winner]["operationId"]
        refused = answers[loser]
        assert refused["error"] == "busy", refused
        in_progress = refused["operation"]
        assert isinstance(in_progress, dict)
        assert (in_progress["id"], in_progress["storePath"]) == (op_id, machine.systems[winner])
        assert f"operation {op_id} is in progress" in str(refused["message"])

        helper.client.confirm(operation_id=str(op_id))
        result = helper.client.wait(str(op_id), timeout=30, poll=0.01)
        assert result["state"] == "Succeeded", result["message"]
        recent = helper.client.status()["recent"]
        assert [r["id"] for r in recent][:1] == [op_id]
        assert len(recent) == round_ + 1  # the refused apply left no operation behind
        touched = {machine.name_of(c["toplevel"]) for c in read_calls(machine.sandbox)}
        assert touched == {winner}
        assert (machine.current(), machine.profile(), machine.boot_default()) == (
            machine.systems[winner],
        ) * 3
        committed = [e.store_path for e in read_committed(helper.paths.state_dir)]
        assert committed == [*before, machine.systems[winner]]  # and only the winner


def tgkill(pid: int, tid: int, signum: int) -> bool:
    """Signal one thread of another process (glibc's tgkill); False if it is gone."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.tgkill(pid, tid, signum) == 0:
        return True
    assert ctypes.get_errno() == errno.ESRCH, os.strerror(ctypes.get_errno())
    return False


def test_sigterm_landing_in_a_thread_other_than_main_stops_the_helper(tmp_path: Path) -> None:
    # The kernel gives a process's signal to any thread that can take it, e.g. one
    # answering a request; Python runs the handler only in the main thread, so a main
    # thread asleep in a lock would not notice. Aim the signal at the other threads.
    paths = write_helper_config(tmp_path)
    helper = start_helper(paths)
    try:
        helper.client.status()  # the operator is attached: the main thread waits for a stop
        others = sorted(
            int(t) for t in os.listdir(f"/proc/{helper.pid}/task") if int(t) != helper.pid
        )
        assert any(tgkill(helper.pid, tid, signal.SIGTERM) for tid in others), others
        assert helper.wait_exit(timeout=10) == 0, helper.stderr_text()
        assert f"signal {int(signal.SIGTERM)}: stopping" in helper.stderr_text()
        assert not paths.socket.exists()
    finally:
        helper.kill()
        cleanup_socket_dir(paths)
