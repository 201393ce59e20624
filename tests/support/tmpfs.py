"""A small tmpfs to fill up: what a full disk looks like to the agent or the helper.

`mounted_tmpfs(path, size)` mounts a tmpfs of `size` at `path` (made if need
be) and unmounts it afterwards; it skips the test where mounting is not
allowed (not root, no CAP_SYS_ADMIN). `fill(path)` writes a file there until
the filesystem says ENOSPC. Must not: touch any other mount.
"""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def mounted_tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def fill(directory: Path, name: str = "filler") -> Path:
    """Write zeros to `directory/name` until the filesystem is full; the file."""
    filler = directory / name
    chunk = b"\0" * 4096
    with open(filler, "ab", buffering=0) as out:
        while True:
            try:
                out.write(chunk)
            except OSError as exc:
                if exc.errno != errno.ENOSPC:
                    raise
                return filler
