"""The helper's hands on the machine: bounded logs, killed process groups, idempotent profiles."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

from reconciler.helper import system
from tests.support.helperproc import add_to_store


def test_a_step_log_is_bounded_and_keeps_the_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    system.run([sys.executable, "-c", "print('x' * 3_000_000)"], log, timeout=30)
    text = log.read_text()
    assert os.path.getsize(log) < system.LOG_LIMIT + 200
    assert "[log truncated]" in text
    assert text.endswith("[exit 0]\n")


def test_a_failed_step_says_how_it_ended(tmp_path: Path) -> None:
    with pytest.raises(system.StepFailed, match=r"exited 3: boom"):
        system.run(["sh", "-c", "echo boom >&2; exit 3"], tmp_path / "op.log", timeout=30)
    with pytest.raises(system.StepFailed, match="cannot run"):
        system.run([str(tmp_path / "missing")], tmp_path / "op.log", timeout=30)


def alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for whoever adopted it."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_step_over_its_timeout_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    start = time.monotonic()
    with pytest.raises(system.StepFailed, match=r"still running after 0\.3s"):
        system.run(
            ["sh", "-c", f"sleep 30 & echo $! > {pidfile}; wait"], tmp_path / "op.log", timeout=0.3
        )
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while alive(child) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(child)


@pytest.mark.nix
def test_setting_a_profile_twice_makes_one_generation(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "marker").write_text(str(tmp_path))
    path = add_to_store(tmp_path / "pkg")
    profile = tmp_path / "profiles" / "system"
    first = system.set_profile(profile, path, None, tmp_path / "op.log")
    again = system.set_profile(profile, path, None, tmp_path / "op.log")
    assert first == again == 1
    assert system.generations(profile) == [1]
    assert system.profile_state(profile) == system.ProfileState(path, 1)
