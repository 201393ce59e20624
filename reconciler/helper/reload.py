"""The helper re-reads agent.toml when it changes, without a restart.

Activation never restarts the helper (its unit is the same in every generation), so a
new agent uid, a new `keep_generations` or new remotes would otherwise reach it only at
the next reboot, and a changed `services.pullnix.agentUid` would lock the agent out for
good. A thread looks at the file every `INTERVAL` seconds; on NixOS it is a symlink into
the store, so the file it resolves to is part of what is compared, not only its times.

- A valid new file takes effect at once (`take` is called with it): the agent uids the
  socket admits, the `[system]` and `[source]` settings the next step reads.
- `[helper] socket` and `state_dir` are not moved under a running helper (the socket is
  bound, the journal lives in the state dir): the old values are kept and the report
  says which keys wait for a restart.
- An invalid file is refused: the old config stays in force, and the reason is in
  `report()` (the helper's status answer carries it, and the agent's status shows it)
  until a valid file replaces it.

Must not: decide anything about an operation; `take` is the only way it acts.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from reconciler.common.config import ConfigError, MachineConfig, load_machine_config
from reconciler.helper.log import log

INTERVAL = 1.0
#: Keys a running helper keeps as they were; they take effect when it restarts.
FIXED_WHILE_RUNNING = ("helper.socket", "helper.state_dir")

Fingerprint = tuple[str, int, int, int, int] | str


def fingerprint(path: Path) -> Fingerprint:
    """What changes when the file does: the file the path resolves to, its inode, size and
    times (a NixOS switch repoints /etc's symlink at another store file with the same
    mtime of 1). A file that cannot be read has its error for a fingerprint."""
    try:
        real = os.path.realpath(path)
        info = os.stat(real)
    except OSError as exc:
        return f"unreadable: {exc.strerror}"
    return (real, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


@dataclass(frozen=True)
class Refusal:
    message: str
    at: float


def _fixed(config: MachineConfig) -> dict[str, Path]:
    return {"helper.socket": config.helper.socket, "helper.state_dir": config.helper.state_dir}


class ConfigReloader:
    def __init__(
        self,
        path: Path,
        config: MachineConfig,
        seen: Fingerprint,
        take: Callable[[MachineConfig], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`config` was loaded from `path` when its fingerprint was `seen` (taken before
        loading it, so a change made in between is found at the first look)."""
        self.path = path
        self.config = config
        self._take = take
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = seen
        self.loaded_at = clock()
        self.refused: Refusal | None = None
        self.waiting: tuple[str, ...] = ()  # changed keys that wait for a restart
        self._started_fixed = _fixed(config)

    def check(self) -> bool:
        """One look at the file; True when a new config was taken."""
        seen = fingerprint(self.path)
        if seen == self._seen:
            return False
        self._seen = seen
        try:
            new = load_machine_config(self.path)
        except ConfigError as exc:
            with self._lock:
                self.refused = Refusal(str(exc), self._clock())
            log.error("the changed machine config is refused, the old one stays: %s", exc)
            return False
        wanted = _fixed(new)
        waiting = tuple(k for k in FIXED_WHILE_RUNNING if wanted[k] != self._started_fixed[k])
        new = replace(
            new,
            helper=replace(
                new.helper,
                socket=self._started_fixed["helper.socket"],
                state_dir=self._started_fixed["helper.state_dir"],
            ),
        )
        with self._lock:
            changed = new != self.config
            self.refused = None
            self.waiting = waiting
            if changed:
                self.config = new
                self.loaded_at = self._clock()
        if waiting:
            log.warning(
                "machine config: %s changed; kept until the helper restarts", ", ".join(waiting)
            )
        if not changed:
            return False
        self._take(new)
        log.info(
            "machine config reloaded from %s (agent uids %s, keep_generations %d)",
            self.path,
            ", ".join(map(str, new.helper.agent_uids)),
            new.system.keep_generations,
        )
        return True

    def run(self, stop: threading.Event, interval: float = INTERVAL) -> None:
        """Look every `interval` seconds until `stop` is set; never dies of a bug."""
        while not stop.wait(interval):
            try:
                self.check()
            except Exception:
                log.exception("machine config reload failed; the old config stays")

    def report(self) -> dict[str, Any]:
        """For the status answer: where the config came from, and any refusal."""
        with self._lock:
            refused = self.refused
            return {
                "path": str(self.path),
                "loadedAt": self.loaded_at,
                "error": None if refused is None else refused.message,
                "errorAt": None if refused is None else refused.at,
                "waitingForRestart": list(self.waiting),
            }
