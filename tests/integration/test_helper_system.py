"""The helper's hands on the machine: bounded logs, killed process groups, idempotent profiles."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reconciler.common.output import LOG_LIMIT, TAIL_LIMIT, cut_log, punch_log
from reconciler.helper import system
from tests.support.helperproc import add_to_store


def test_a_step_log_is_bounded_and_keeps_the_exit_status(tmp_path: Path) -> None:
    log = tmp_path / "op.log"
    system.run([sys.executable, "-c", "print('x' * 3_000_000)"], log, timeout=30)
    text = log.read_text()
    assert os.path.getsize(log) < system.LOG_LIMIT + 200
    assert "[log truncated]" in text
    assert text.endswith("[exit 0]\n")


def test_a_log_another_process_appends_to_is_bounded_while_it_writes(tmp_path: Path) -> None:
    """systemd's `append:` output of an activation in its own unit: while it runs, the
    helper frees the disk under the log's middle at each poll, moving nothing, so no
    line written is lost but the middle; once it has ended, the log is cut to its
    limit, its first and its last words kept."""
    log = tmp_path / "activation.log"
    log.write_bytes(b"$ switch-to-configuration test\n")
    writer = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND)\n"
            "for i in range(3000):\n"
            "    os.write(fd, b'y' * 16383 + b'\\n')\n"
            "os.write(fd, b'the last words\\n')\n",
            str(log),
        ]
    )
    freed = 0
    while writer.poll() is None:
        freed += punch_log(log, LOG_LIMIT)
    assert writer.returncode == 0
    freed += punch_log(log, LOG_LIMIT)
    written = len(b"$ switch-to-configuration test\n") + 3000 * 16384 + 15
    assert os.path.getsize(log) == written  # nothing moved, nothing lost at the end
    assert freed > 0
    assert os.stat(log).st_blocks * 512 <= LOG_LIMIT + TAIL_LIMIT + 64 * 1024
    with open(log, "rb") as sink:
        sink.seek(written - 15)
        assert sink.read() == b"the last words\n"

    dropped = cut_log(log, LOG_LIMIT)
    text = log.read_bytes()
    assert dropped == written - LOG_LIMIT - TAIL_LIMIT
    assert len(text) == LOG_LIMIT + len(b"\n[log truncated]\n") + TAIL_LIMIT
    assert text.startswith(b"$ switch-to-configuration test\n")
    assert text.endswith(b"y\nthe last words\n")
    assert cut_log(log, LOG_LIMIT) == 0  # under the bound now: untouched
    assert (punch_log(tmp_path / "missing.log", LOG_LIMIT), cut_log(tmp_path / "m", 1)) == (0, 0)


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
