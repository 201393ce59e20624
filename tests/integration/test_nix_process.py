"""Running a command the way the Nix driver runs Nix: lines stream, timeouts kill the group."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from reconciler.nix.errors import NixMissing, NixTimeout
from reconciler.nix.process import TAIL_LINES, run_nix


def test_stderr_lines_reach_the_callback_before_the_command_ends() -> None:
    arrivals: list[tuple[str, float]] = []
    started = time.monotonic()
    run = run_nix(
        ["sh", "-c", "echo first >&2; sleep 1; echo second >&2; echo out"],
        timeout=10,
        on_line=lambda line: arrivals.append((line, time.monotonic())),
    )
    assert [line for line, _ in arrivals] == ["first", "second"]
    assert arrivals[0][1] - started < 0.8 <= arrivals[1][1] - started
    assert run.ok
    assert run.stdout == "out\n"
    assert run.tail == ("first", "second")


def test_only_the_last_lines_are_kept_and_colour_is_stripped() -> None:
    run = run_nix(
        [
            "sh",
            "-c",
            'i=0; while [ $i -lt 120 ]; do echo "line $i" >&2; '
            "i=$((i+1)); done; printf '\\033[31;1merror:\\033[0m red' >&2; exit 3",
        ],
        timeout=10,
    )
    assert run.returncode == 3
    assert len(run.tail) == TAIL_LINES
    assert run.tail[-1] == "error: red"  # the unterminated last line is kept too
    assert run.tail[0] == "line 71"


def test_a_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    script = f"sleep 30 & echo $! > {pidfile}; wait"
    with pytest.raises(NixTimeout, match="did not finish within"):
        run_nix(["sh", "-c", script], timeout=0.5)
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 5
    while _alive(child) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child)


def test_a_missing_binary_is_nix_missing(tmp_path: Path) -> None:
    with pytest.raises(NixMissing, match="'nix' was not found on PATH"):
        run_nix(["nix", "--version"], timeout=5, env={"PATH": str(tmp_path)})


def _alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (killed, not yet reaped by its new parent) is dead."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except FileNotFoundError:
        return False
    return state != "Z"
