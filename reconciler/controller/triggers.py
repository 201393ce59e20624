"""Triggers: what wakes the agent's loop, coalesced into one flag; and the file watchers.

Owns two things:

- `Wakeup`, the one place triggers meet the loop. A trigger is a reason
  added to a set: "source", "config" and "helper" from the file watchers,
  "webhook", "now" (`reconcile --now`), "api" (a suspend, resume or retry),
  "start" and "stop"; the loop's `wait` takes the whole set at once (the
  loop itself names a pass it starts by its timer "interval", "retry" or
  "helper"). It is a flag, not a queue: a hundred
  triggers during a pass are one more pass, never a hundred.
- `FileWatcher`, which turns file changes into triggers with watchfiles
  (inotify): a `file://` remote's `refs/` and `packed-refs` ("source"), the
  machine config file ("config"; the loop reloads it), and the helper's
  `journal.json` ("helper"; so the agent learns at once when an operation moves
  on), each only where it exists and can be read. Directories are watched,
  not files, because git and the helper replace files by renaming.

Must not: run a pass, reload anything, or decide what a trigger means.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import watchfiles

from reconciler.common.answers import JOURNAL_FILE
from reconciler.common.config import MachineConfig

log = logging.getLogger("pullnix.triggers")


class Wakeup:
    """Reasons to run a pass, coalesced: `fire` adds one, `wait` takes them all."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._reasons: set[str] = set()
        self.fired = 0  # how many triggers arrived, coalesced or not

    def fire(self, reason: str) -> None:
        with self._cond:
            self._reasons.add(reason)
            self.fired += 1
            self._cond.notify_all()

    def wait(self, timeout: float | None) -> frozenset[str]:
        """Block until a reason is pending or `timeout` passes; take and return them all."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._reasons), timeout)
            taken = frozenset(self._reasons)
            self._reasons.clear()
            return taken


@dataclass(frozen=True)
class Watch:
    """Changes in `directory` (below it, if recursive; else to one of `names`) mean `reason`."""

    directory: Path
    reason: str
    recursive: bool = False
    names: frozenset[str] | None = None  # None: any entry

    def matches(self, path: Path) -> bool:
        if self.recursive:
            return path == self.directory or self.directory in path.parents
        return path.parent == self.directory and (self.names is None or path.name in self.names)


def watch_plan(machine: MachineConfig, config_path: Path) -> tuple[Watch, ...]:
    """What to watch for this machine: local remotes, the config file, the helper's journal."""
    plan: list[Watch] = []
    for url in machine.source.urls:
        bare = local_repository(url)
        if bare is not None and (bare / "refs").is_dir():
            plan.append(Watch(bare / "refs", "source", recursive=True))
            plan.append(Watch(bare, "source", names=frozenset({"packed-refs"})))
    config_dir = config_path.absolute().parent
    if config_dir.is_dir():
        plan.append(Watch(config_dir, "config", names=frozenset({config_path.name})))
    if journal_readable(machine.helper.state_dir):
        plan.append(Watch(machine.helper.state_dir, "helper", names=frozenset({JOURNAL_FILE})))
    return tuple(plan)


def local_repository(url: str) -> Path | None:
    """The directory of a `file://` remote (None for any other kind)."""
    parts = urlsplit(url)
    if parts.scheme != "file" or parts.netloc not in ("", "localhost"):
        return None
    return Path(unquote(parts.path))


def journal_readable(state_dir: Path) -> bool:
    """Can this process list the helper's state dir and read its journal (root: yes)?"""
    journal = state_dir / JOURNAL_FILE
    return os.access(state_dir, os.R_OK | os.X_OK) and (
        not journal.exists() or os.access(journal, os.R_OK)
    )


class FileWatcher:
    """Watches the plan in background threads (one recursive, one not); fires reasons."""

    def __init__(
        self,
        plan: Iterable[Watch],
        fire: Callable[[str], None],
        debounce_ms: int = 50,
        step_ms: int = 250,
    ) -> None:
        self.plan = tuple(plan)
        self.fire = fire
        self.debounce_ms = debounce_ms
        # watchfiles' watcher wakes every `step_ms` to look for changes (and the stop flag),
        # holding the GIL each time: 250 ms keeps an idle agent near 0 CPU and still sees
        # a push well within a second.
        self.step_ms = step_ms
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def journal_watched(self) -> bool:
        return any(w.reason == "helper" for w in self.plan)

    def start(self) -> None:
        for recursive in (True, False):
            group = tuple(w for w in self.plan if w.recursive is recursive)
            if group:
                thread = threading.Thread(
                    target=self._run,
                    args=(group, recursive),
                    name=f"watch-{'tree' if recursive else 'dir'}",
                    daemon=True,
                )
                thread.start()
                self._threads.append(thread)
        for watch in self.plan:
            log.info("watching %s for %s", watch.directory, watch.reason)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def _run(self, group: tuple[Watch, ...], recursive: bool) -> None:
        directories = sorted({str(w.directory) for w in group})

        def wanted(_change: watchfiles.Change, path: str) -> bool:
            return any(w.matches(Path(path)) for w in group)

        try:
            for changes in watchfiles.watch(
                *directories,
                watch_filter=wanted,
                recursive=recursive,
                debounce=self.debounce_ms,
                step=self.step_ms,
                stop_event=self._stop,
                rust_timeout=1000,
                raise_interrupt=False,
                ignore_permission_denied=True,
            ):
                reasons = {w.reason for _, path in changes for w in group if w.matches(Path(path))}
                for reason in sorted(reasons):
                    self.fire(reason)
        except (OSError, RuntimeError) as exc:  # a directory vanished, inotify ran out
            log.warning("stopped watching %s: %s", ", ".join(directories), exc)
