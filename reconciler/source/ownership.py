"""Who writes the mirror: its flock, and the git lock files a killed writer leaves behind.

Owns `<state_dir>/mirror.lock`. Every writer of the mirror (a pass of the
agent, or of `pullnix reconcile --once`) holds it (flock) while it fetches or
moves a ref, so a git lock file inside the mirror (`refs/heads/main.lock`,
`packed-refs.lock`, `HEAD.lock`, `config.lock`) seen while holding it cannot
belong to a live writer: libgit2 leaves one behind when its process is killed
mid-update (a power cut, an OOM kill), and would then refuse every update of
that ref for good. Such a file is removed, and logged.

Must not: fetch, or decide anything about commits.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger("pullnix.source")

MIRROR_LOCK = "mirror.lock"


class MirrorLock:
    """The mirror's flock, re-entrant within one object (one GitSource)."""

    def __init__(self, state_dir: Path, mirror: Path) -> None:
        self.path = state_dir / MIRROR_LOCK
        self.mirror = mirror
        self._depth = 0

    @contextmanager
    def held(self) -> Iterator[None]:
        """Hold the lock (waiting for another writer), with stale git locks cleared."""
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            self._depth = 1
            for stale in clear_stale_locks(self.mirror):
                log.warning("removed %s, left by a writer that was killed", stale)
            yield
        finally:
            self._depth = 0
            os.close(fd)  # releases the flock


def clear_stale_locks(mirror: Path) -> list[Path]:
    """Remove the git lock files under `mirror` (objects/ aside: packs are written under
    temporary names); the caller holds MIRROR_LOCK. The ones removed."""
    removed: list[Path] = []
    for root, dirs, files in os.walk(mirror):
        if root == str(mirror):
            dirs[:] = [d for d in dirs if d != "objects"]
        for name in files:
            if name.endswith(".lock"):
                path = Path(root, name)
                path.unlink(missing_ok=True)
                removed.append(path)
    return removed
