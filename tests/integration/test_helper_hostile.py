"""The root helper stays bounded and owned under a full disk, a flood and idle connections.

- a health check printing 20 MB on one line costs the helper a fixed amount of
  memory, and leaves a short message in the journal (VmHWM and the archived
  operation's size are printed, for the record);
- a state dir that fills up (a real 64 KiB tmpfs) during Verifying: the journal
  write fails, the operation rolls back to the old generation in memory and
  says why, the helper is not left busy, and once space is free the next deploy
  goes through and the outcome reaches the disk;
- 300 idle connections get at most `MAX_CONNECTIONS` threads; the rest are
  answered `overloaded` at once, and the helper answers again when they go.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from reconciler.common.client import HelperUnavailable
from reconciler.helper.server import MAX_CONNECTIONS
from tests.support.agentmachine import wait_for
from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    build_machine,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.tmpfs import mounted_tmpfs

pytestmark = pytest.mark.nix

FLOOD = 20_000_000


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    return build_machine(
        tmp_path_factory.mktemp("helper-hostile"),
        {"old": {"version": "1"}, "new": {"version": "2"}},
    )


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def check(argv: list[str], timeout: float = 60) -> dict[str, object]:
    return {
        "name": "probe",
        "timeout": timeout,
        "retries": 0,
        "interval": 0,
        "command": {"argv": argv},
    }


def test_a_check_flooding_one_line_costs_a_fixed_amount(
    machine: FakeMachine, helper: HelperProcess
) -> None:
    flood = f"head -c {FLOOD} /dev/zero | tr '\\0' x; exit 1"
    op_id = helper.client.apply(machine.systems["new"], health_checks=[check(["sh", "-c", flood])])
    result = helper.client.wait(op_id, timeout=120)
    assert result["state"] == "RolledBack"
    assert machine.current() == machine.systems["old"]
    message = result["checks"][0]["message"]
    assert len(message) < 600
    assert message.startswith("sh -c")
    assert " ... " in message
    archived = helper.paths.state_dir / "operations" / f"{op_id}.json"
    peak_kib = proc_status(helper.pid, "VmHWM")
    print(
        f"\nhelper VmHWM {peak_kib / 1024:.1f} MiB; archived operation {archived.stat().st_size} B"
    )
    assert archived.stat().st_size < 64 * 1024
    assert peak_kib < 100 * 1024  # was 994 MB: the 20 MB line was held in four places


def test_a_full_state_dir_rolls_back_in_memory_and_frees_the_helper(
    machine: FakeMachine, tmp_path: Path
) -> None:
    machine.reset()
    paths = write_helper_config(tmp_path, machine.sandbox)
    with mounted_tmpfs(paths.state_dir, "64k") as state:
        helper = start_helper(paths)
        try:
            filler = state / "filler"
            fill = f"head -c 1000000 /dev/zero > {filler}; exit 0"
            op_id = helper.client.apply(
                machine.systems["new"], health_checks=[check(["sh", "-c", fill])]
            )
            result = helper.client.wait(op_id, timeout=60)
            print(f"\nafter a full disk: {result['state']}: {result['message']}")
            assert result["state"] == "RolledBack"
            assert "the journal could not be written" in result["message"]
            assert machine.current() == machine.systems["old"]
            assert helper.client.status()["busy"] is False
            assert json.loads((state / "journal.json").read_text())["operation"]["state"] in (
                "Pending",
                "Activating",
                "Verifying",
            )  # what a restart would recover from: it would roll back as well
            filler.unlink()
            op_id2 = helper.client.apply(machine.systems["new"], health_checks=[check(["true"])])
            assert helper.client.wait(op_id2, timeout=60)["state"] == "Succeeded"
            assert machine.current() == machine.systems["new"]
            assert (state / "operations" / f"{op_id}.json").exists()  # archived once it could
            assert json.loads((state / "journal.json").read_text())["operation"] is None
        finally:
            helper.stop()
            cleanup_socket_dir(paths)


def test_idle_connections_are_capped(helper: HelperProcess) -> None:
    conns = []
    try:
        for _ in range(300):
            conn = socket.socket(socket.AF_UNIX)
            conn.connect(str(helper.paths.socket))
            conns.append(conn)
        wait_for(
            lambda: (
                helper.client.status is not None
                and proc_status(helper.pid, "Threads") <= MAX_CONNECTIONS + 4
            ),
            30,
            "the helper to shed the connections over its cap",
        )
        threads = proc_status(helper.pid, "Threads")
        print(f"\nhelper threads with 300 idle connections: {threads}")
        # Refused at once: answered `overloaded`, or the listen backlog is full (EAGAIN).
        with pytest.raises(HelperUnavailable, match=r"connections are open already|\[Errno 11\]"):
            helper.client.ping()
    finally:
        for conn in conns:
            conn.close()
    wait_for(lambda: _answers(helper), 30, "the helper to answer again")


def _answers(helper: HelperProcess) -> bool:
    try:
        helper.client.status()
    except HelperUnavailable:
        return False
    return True
