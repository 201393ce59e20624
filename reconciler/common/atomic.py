"""Atomic file writes: temp file, fsync, rename, fsync the directory.

Owns the one way pullnix writes a state file (journal, status, records) so
that a crash or power cut leaves either the old content or the new, never
half of either. Standard library only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an I/O error: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json_atomic(
    path: Path, value: Any, mode: int = 0o644, *, unless_same: bool = False
) -> bool:
    """Write `value` as indented JSON, atomically; with `unless_same`, not when the file
    already holds exactly those bytes (no fsyncs for a state that did not change).
    Whether it wrote."""
    data = (json.dumps(value, indent=2, sort_keys=True) + "\n").encode()
    if unless_same:
        try:
            if path.read_bytes() == data:
                return False
        except OSError:
            pass
    write_atomic(path, data, mode)
    return True
