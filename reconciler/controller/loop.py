"""The agent's loop: one worker thread, one pass at a time, level-triggered.

Owns when passes run and what the rest of the agent may know about them:

- the worker waits for a trigger (a `Wakeup` reason) or its timer, then runs
  one `Reconciler.run_pass()`; triggers that come during a pass are one more
  pass; the timer is `core.schedule` (interval with jitter, backoff after a
  failure, following the helper while it works);
- while the helper has an operation under way it is followed closely: its
  journal wakes the loop when watched, otherwise its `status` is polled and a
  pass runs as soon as the operation moves (so this agent confirms a new
  generation it runs in at once, and learns the verdict at once);
- a config trigger reloads the machine config before the pass; a bad one is
  kept out, logged and reported (`configError`), the old one stays;
- changes to the agent's record asked for over the local API (suspend,
  resume, retry) are applied between passes, never under one;
- `wait_settled` lets a caller follow a pass it asked for to its end (the
  helper's verdict included).
- after each pass, `helper_upgrade` asks an idle helper once to upgrade to
  the helper this generation carries, when its profile runs another.

Must not: decide anything about the machine (that is `core.decide`, inside the
pass), or touch sockets other than the helper's.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from reconciler.common.clock import utc_stamp
from reconciler.common.config import (
    ConfigError,
    MachineConfig,
    load_machine_config,
    require_urls,
)
from reconciler.common.durations import parse_duration
from reconciler.controller.failed_pass import report_internal_error
from reconciler.controller.helper_upgrade import HelperUpgrade, wanted_helper_link
from reconciler.controller.reconcile import PassResult, Reconciler
from reconciler.controller.store import StateStore
from reconciler.controller.triggers import Wakeup
from reconciler.core import schedule

log = logging.getLogger("pullnix.agent")
#: How many finished passes the agent's status lists (newest first).
RECENT_PASSES = 20


@dataclass(frozen=True)
class PassReport:
    """One finished pass, as the agent's status and `reconcile --wait` see it."""

    number: int
    reasons: tuple[str, ...]
    started_at: str
    seconds: float
    result: PassResult

    @property
    def done(self) -> bool:
        """Nothing more to wait for: settled, or failed."""
        return self.result.settled or self.result.error

    def to_json(self) -> dict[str, Any]:
        r = self.result
        return {
            "number": self.number,
            "reasons": list(self.reasons),
            "startedAt": self.started_at,
            "seconds": round(self.seconds, 3),
            "action": type(r.action).__name__ if r.action is not None else None,
            "phase": r.outcome.phase,
            "reason": r.outcome.reason,
            "message": r.outcome.message,
            "exitCode": r.exit_code,
            "error": r.error,
            "settled": r.settled,
            "traceId": r.trace_id,
            "operationId": r.operation_id,
        }


class PassLoop:
    def __init__(
        self,
        machine: MachineConfig,
        wake: Wakeup,
        *,
        config: ConfigLoader | None = None,
        on_config: Callable[[MachineConfig, MachineConfig], None] = lambda _old, _new: None,
        on_pass: Callable[[PassReport], None] = lambda _report: None,
        journal_watched: Callable[[], bool] = lambda: False,
        backoff: schedule.BackoffPolicy | None = None,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.machine = machine
        self.wake = wake
        self.config = config
        self.on_config = on_config
        self.on_pass = on_pass
        self.journal_watched = journal_watched
        self.backoff = backoff or schedule.BackoffPolicy()
        self.rand = rand
        self.config_error: str | None = None
        self.failures = 0
        self.following = False
        self.next_at = 0.0  # monotonic time of the timer
        self._reconciler: Reconciler | None = None
        self._cond = threading.Condition()
        self._started = 0
        self._running = False
        self._stopping = False
        self._last: PassReport | None = None
        self._recent: deque[PassReport] = deque(maxlen=RECENT_PASSES)
        self._last_start: float | None = None
        self._last_outside_start: float | None = None  # of the last pass a push etc. started
        self._pending_changes: dict[str, Any] = {}
        self.helper_upgrade = HelperUpgrade(
            None if config is None else wanted_helper_link(config.path)
        )

    # -- what other threads may ask -------------------------------------------------

    def request_pass(self, reason: str) -> int:
        """Trigger a pass; the number of the first pass that will have seen the request."""
        with self._cond:
            target = self._started + 1
        self.wake.fire(reason)
        return target

    @property
    def last(self) -> PassReport | None:
        """The last finished pass."""
        with self._cond:
            return self._last

    def wait_settled(self, target: int, timeout: float) -> PassReport | None:
        """The first report numbered `target` or later that is done; None on timeout or stop."""

        def ready() -> bool:
            last = self._last
            return self._stopping or (last is not None and last.number >= target and last.done)

        with self._cond:
            if not self._cond.wait_for(ready, timeout) or self._stopping:
                return None
            return self._last

    def change_record(self, **changes: Any) -> bool:
        """Suspend/resume/retry: now if idle, else right after the pass; True if deferred."""
        with self._cond:
            deferred = self._running
            if deferred:
                self._pending_changes.update(changes)
            else:
                StateStore(self.machine.state_dir).update_record(**changes)
        self.wake.fire("api")
        return deferred

    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            last = self._last
            return {
                "passes": last.number if last else 0,
                "running": self._running,
                "following": self.following,
                "failures": self.failures,
                "nextPassIn": round(max(0.0, self.next_at - time.monotonic()), 3),
                "lastPass": last.to_json() if last else None,
                "recentPasses": [r.to_json() for r in self._recent],
                "configError": self.config_error,
                "journalWatched": self.journal_watched(),
            }

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        self.wake.fire("stop")

    # -- the worker -------------------------------------------------------------------

    def run(
        self, stop: threading.Event, until: Callable[[PassReport], bool] = lambda _r: False
    ) -> None:
        """The worker thread's body: until `stop` is set, or a pass's report satisfies
        `until` (`reconcile --once`: settled, failed, or out of time)."""
        self.wake.fire("start")
        baseline: Any = None
        while not stop.is_set():
            reasons = self.wake.wait(max(0.0, self.next_at - time.monotonic()))
            if stop.is_set():
                break
            if not reasons:
                if time.monotonic() < self.next_at:
                    continue
                if self.following and not self._follow_due(baseline):
                    self.next_at = time.monotonic() + schedule.next_delay(
                        "following", 0, self._timing(), 0.0, self.journal_watched()
                    )
                    continue
                reasons = frozenset(
                    {"helper" if self.following else "retry" if self.failures else "interval"}
                )
            reasons = self._wait_gap(reasons, stop)
            if stop.is_set():
                break
            if "config" in reasons:
                self._reload_config()
            baseline = self._helper_fingerprint()
            if until(self._one_pass(reasons)):
                break

    def _wait_gap(self, reasons: frozenset[str], stop: threading.Event) -> frozenset[str]:
        """Hold back a pass from outside triggers until `min_gap` after the last pass that
        outside triggers began (a push right after a deploy's own passes does not wait)."""
        while not stop.is_set():
            last = self._last_outside_start
            since = None if last is None else time.monotonic() - last
            gap = schedule.start_delay(reasons, since, self._timing().min_gap)
            if gap <= 0:
                break
            reasons |= self.wake.wait(gap)
        return reasons

    def _one_pass(self, reasons: frozenset[str]) -> PassReport:
        with self._cond:
            self._started += 1
            number = self._started
            self._running = True
        self._last_start = started = time.monotonic()
        if reasons & schedule.OUTSIDE_TRIGGERS:
            self._last_outside_start = started
        started_at = utc_stamp()
        log.info("pass %d starts (%s)", number, ", ".join(sorted(reasons)))
        result = self._run_pass()
        seconds = time.monotonic() - started
        report = PassReport(number, tuple(sorted(reasons)), started_at, seconds, result)
        kind = schedule.classify(error=result.error, settled=result.settled)
        self.failures = self.failures + 1 if kind == "failed" else 0
        self.following = kind == "following"
        delay = schedule.next_delay(
            kind, self.failures, self._timing(), self.rand(), self.journal_watched()
        )
        self.on_pass(report)  # metrics and sd_notify first: whoever sees the pass done sees them
        with self._cond:
            if self._pending_changes:
                StateStore(self.machine.state_dir).update_record(**self._pending_changes)
                self._pending_changes.clear()
                self.wake.fire("api")
            self.next_at = time.monotonic() + delay
            self._running = False
            self._last = report
            self._recent.appendleft(report)
            self._cond.notify_all()
        log.info(
            "pass %d done in %.2fs: %s %s: %s (exit %d); next in %.1fs",
            number,
            seconds,
            result.outcome.phase,
            result.outcome.reason,
            result.outcome.message,
            result.exit_code,
            delay,
        )
        self.helper_upgrade.check(self.machine)
        return report

    def _run_pass(self) -> PassResult:
        try:
            if self._reconciler is None:
                self._reconciler = Reconciler(self.machine)
            return self._reconciler.run_pass()
        except Exception as exc:  # a bug or an unforeseen failure: back off, never die
            store = StateStore(self.machine.state_dir)
            outcome = report_internal_error(store, self.machine.host, exc)
            return PassResult(None, outcome, 1, "", error=True)

    def _reload_config(self) -> None:
        if self.config is None:
            return
        try:
            new = self.config()
        except ConfigError as exc:
            if self.config_error != str(exc):
                log.error("the changed machine config is refused, the old one stays: %s", exc)
            self.config_error = str(exc)
            return
        self.config_error = None
        old = self.machine
        if new == old:
            return
        log.info("machine config reloaded")
        self.machine = new
        self._reconciler = None
        self.on_config(old, new)

    # -- timing and the helper ----------------------------------------------------------

    def _timing(self) -> schedule.Timing:
        triggers = self.machine.triggers
        return schedule.Timing(
            interval=schedule.effective_interval(triggers.interval, self._spec_interval()),
            jitter=triggers.jitter,
            backoff=self.backoff,
        )

    def _spec_interval(self) -> float | None:
        doc = StateStore(self.machine.state_dir).load_status()
        raw = (doc.get("spec") or {}).get("interval")
        try:
            return parse_duration(raw) if isinstance(raw, str) else None
        except ValueError:
            return None

    def _helper_fingerprint(self) -> Any:
        """What about the helper's operation would make a pass worth running."""
        try:
            status = HelperClient(self.machine.helper.socket, timeout=5).helper_status()
        except (HelperUnavailable, HelperError, KeyError, TypeError, ValueError):
            return "unavailable"
        op, last = status.operation, status.last
        finished = last.id if last is not None else None  # an operation may end between looks
        if op is None:
            return (False, None, None, False, finished)
        return (True, op.id, str(op.state), op.confirmed_at is not None, finished)

    def _follow_due(self, baseline: Any) -> bool:
        """While following: has the operation moved (or has an interval passed regardless)?"""
        since = time.monotonic() - (self._last_start or 0.0)
        last = self._last
        if last is not None and last.result.again:  # decided on a failure: decide again now
            return True
        return since >= self._timing().interval or self._helper_fingerprint() != baseline


class ConfigLoader:
    """A reload function for `PassLoop`: load `path`, then `check` it (both raise
    ConfigError). The loop also finds the wanted helper beside `path`."""

    def __init__(self, path: Path, check: Callable[[MachineConfig], None]) -> None:
        self.path = path
        self.check = check

    def __call__(self) -> MachineConfig:
        machine = load_machine_config(self.path)
        require_urls(machine, str(self.path))
        self.check(machine)
        return machine
