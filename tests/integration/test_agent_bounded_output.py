"""The agent keeps a bounded amount of what its children print: gates, the hook and Nix.

Each child prints 20 MB on one line (and fails). What reaches a message (the
GateRefused that becomes the status, the hook's log line, Nix's error tail) is
short, and the Python heap of the agent never holds the flood (tracemalloc's
peak stays far below it). Real processes, no fakes.
"""

from __future__ import annotations

import logging
import tracemalloc
from pathlib import Path

import pytest

from reconciler.controller.gates import GateRefused, run_gates
from reconciler.controller.hooks import run_post_deploy
from reconciler.core.history import HistoryEntry
from reconciler.core.model import Command, Gate
from reconciler.nix.process import run_nix

FLOOD = 20_000_000
ONE_LINE = f"head -c {FLOOD} /dev/zero | tr '\\0' x"
LIMIT = 16 * 1024 * 1024  # bytes of Python heap: less than the flood


def test_a_flooding_gate_leaves_a_short_refusal(tmp_path: Path) -> None:
    gate = Gate(name="flood", command=Command(argv=("sh", "-c", f"{ONE_LINE}; exit 1")))
    tracemalloc.start()
    try:
        with pytest.raises(GateRefused) as caught:
            run_gates([gate], "/nix/store/new", None, tmp_path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(caught.value.message) < 2000
    assert "refused the new system (exit 1)" in caught.value.message
    assert peak < LIMIT


def test_a_flooding_hook_logs_a_short_line(caplog: pytest.LogCaptureFixture) -> None:
    entry = HistoryEntry.from_json(
        {"revision": "a" * 40, "result": "Succeeded", "storePath": "/nix/store/x", "kind": "apply"}
    )
    tracemalloc.start()
    try:
        with caplog.at_level(logging.WARNING, logger="pullnix.hooks"):
            code = run_post_deploy(Command(argv=("sh", "-c", f"{ONE_LINE} >&2; exit 3")), entry)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 3
    assert peak < LIMIT
    (record,) = caplog.records
    assert len(record.getMessage()) < 1000


def test_nix_output_on_one_line_is_cut_and_capped(caplog: pytest.LogCaptureFixture) -> None:
    lines: list[str] = []
    tracemalloc.start()
    try:
        with caplog.at_level(logging.INFO, logger="reconciler.nix"):
            run = run_nix(
                ["sh", "-c", f"{ONE_LINE} >&2; exit 1"], timeout=120, on_line=lines.append
            )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert run.returncode == 1
    assert max(len(line) for line in run.tail) < 5000
    assert sum(len(line) for line in lines) <= 5 * 1024 * 1024  # the log's cap
    assert peak < LIMIT
