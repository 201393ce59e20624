"""The helper's state dir under least privilege: root writes, the directory's group (the
agent's, under the NixOS module) reads the journal and the records of committed generations,
nobody else gets in, and a state dir the helper does not own is refused."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.common.answers import JOURNAL_FILE, OPERATIONS_DIR
from reconciler.common.records import RECORDS_FILE
from tests.support.helperproc import (
    FakeMachine,
    build_machine,
    running_helper,
    start_helper,
    write_helper_config,
)

#: An unprivileged user and group standing in for the agent (uid 399 on NixOS).
AGENT_UID = AGENT_GID = 65534
OTHER_GID = 65533


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def as_user(gid: int, argv: list[str]) -> subprocess.CompletedProcess[str]:
    """Run `argv` as AGENT_UID with primary group `gid` and no other groups."""
    return subprocess.run(
        ["setpriv", f"--reuid={AGENT_UID}", f"--regid={gid}", "--clear-groups", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="changes owners and users (root)")


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A directory others may pass through (pytest's own is root's alone), so only the
    state dir's mode decides what the stand-in agent can reach."""
    path = Path(tempfile.mkdtemp(prefix="pnx-state-", dir="/tmp"))
    path.chmod(0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def machine(tmp_path_factory: pytest.TempPathFactory) -> FakeMachine:
    return build_machine(
        tmp_path_factory.mktemp("helper-state"), {"old": {"version": "1"}, "new": {"version": "2"}}
    )


@pytest.mark.nix
@needs_root
def test_the_agents_group_reads_the_journal_and_records_and_writes_nothing(
    machine: FakeMachine, open_tmp: Path
) -> None:
    machine.reset()
    paths = write_helper_config(open_tmp, machine.sandbox)
    # What tmpfiles does under the module: the directory exists, group = the agent's,
    # setgid (here with the 0700 an older helper left).
    paths.state_dir.mkdir()
    os.chown(paths.state_dir, 0, AGENT_GID)
    os.chmod(paths.state_dir, 0o2700)
    with running_helper(paths) as helper:
        op_id = helper.client.apply(machine.systems["new"], revision=machine.revisions["new"])
        assert helper.client.wait(op_id, timeout=60)["state"] == "Succeeded"
    state = paths.state_dir
    journal, records = state / JOURNAL_FILE, state / RECORDS_FILE
    archived = state / OPERATIONS_DIR / f"{op_id}.json"
    assert mode(state) == 0o2750
    assert state.stat().st_gid == AGENT_GID  # kept: the helper never changes the group
    assert {p.stat().st_gid for p in (journal, records, archived)} == {AGENT_GID}
    assert (mode(journal), mode(records), mode(archived)) == (0o640, 0o640, 0o640)
    # A member of the group reads what the agent needs...
    for path in (journal, records, archived):
        read = as_user(AGENT_GID, ["cat", str(path)])
        assert read.returncode == 0, read.stderr
    assert machine.revisions["new"] in as_user(AGENT_GID, ["cat", str(records)]).stdout
    # ...but cannot plant anything the helper would act on after a restart.
    forged = as_user(AGENT_GID, ["sh", "-c", f"echo '{{}}' > {state}/forged.json"])
    assert forged.returncode != 0
    assert not (state / "forged.json").exists()
    # Anyone else does not even get in.
    assert as_user(OTHER_GID, ["cat", str(journal)]).returncode != 0
    assert as_user(OTHER_GID, ["ls", str(state)]).returncode != 0


@needs_root
@pytest.mark.parametrize(
    ("before", "after"), [(0o700, 0o750), (0o777, 0o750), (0o2775, 0o2750), (0o4757, 0o750)]
)
def test_the_helper_holds_its_state_dir_at_0750_keeping_setgid(
    tmp_path: Path, before: int, after: int
) -> None:
    paths = write_helper_config(tmp_path)
    paths.state_dir.mkdir()
    os.chmod(paths.state_dir, before)
    with running_helper(paths) as helper:
        helper.client.status()
        assert mode(paths.state_dir) == after


def test_a_new_state_dir_is_made_0750(tmp_path: Path) -> None:
    paths = write_helper_config(tmp_path)
    assert not paths.state_dir.exists()
    with running_helper(paths):
        assert mode(paths.state_dir) == 0o750


@needs_root
def test_a_state_dir_owned_by_another_user_is_refused(tmp_path: Path) -> None:
    paths = write_helper_config(tmp_path)
    paths.state_dir.mkdir(mode=0o750)
    os.chown(paths.state_dir, AGENT_UID, AGENT_GID)
    helper = start_helper(paths, wait=False)
    assert helper.wait_exit(30) == 2
    assert f"belongs to uid {AGENT_UID}" in helper.stderr_text()
    assert mode(paths.state_dir) == 0o750  # nothing changed
    assert not paths.socket.exists()


def test_a_state_dir_that_is_a_symlink_is_refused(tmp_path: Path) -> None:
    paths = write_helper_config(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    paths.state_dir.symlink_to(tmp_path / "elsewhere")
    helper = start_helper(paths, wait=False)
    assert helper.wait_exit(30) == 2
    assert "not a directory" in helper.stderr_text()
