"""When the agent runs its next pass: interval with jitter, backoff, following the helper.

Owns the timing policy of the agent's loop as pure functions of plain values
(the random draw is passed in, so every schedule is a table):

- after a pass that converged, or is Stalled, or is blocked on a rolled-back
  revision: the interval plus a random 0..jitter, so a fleet does not poll
  in step. A terminal error is never hot-looped: only the interval or a new
  trigger (a push, a changed machine config, `reconcile --now`) brings the
  next pass;
- after a pass that failed (a TransientError, or an error of neither kind):
  exponential backoff with jitter and a cap, as tenacity's
  `wait_exponential` + `wait_random` compute it: ``min(cap, initial *
  multiplier**(failures-1)) + rand*jitter``, and never longer than the
  interval would have waited (an error must not make the machine slower
  to notice a fix than success would);
- while the helper has an operation under way: look again soon (the helper's
  journal or its `status` is polled), so a new generation is confirmed as
  soon as this agent runs in it;
- which interval: the machine's `[triggers] interval` is the default and the
  desired state's `spec.interval` wins when it is set. The loaded spec has
  its schema default (5m) filled in, so a spec.interval equal to that default
  counts as unset: a fleet cannot pin 5m on a machine configured otherwise.
- triggers from outside (webhook, watched files) start a pass at most once
  per `min_gap` seconds after the previous pass they started, so a burst of
  pushes costs at most two passes, while a push just after the passes that
  followed a deploy does not wait; a user's `reconcile --now` and the
  helper's own progress never wait.

Must not: sleep, read the clock or draw random numbers (the loop does).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

#: The schema's default for spec.interval ("5m"): a spec carrying it did not set one.
SPEC_INTERVAL_DEFAULT = 300.0
#: Triggers that start a pass without waiting out `min_gap`.
URGENT_TRIGGERS = frozenset({"now", "api", "helper", "start"})
#: Triggers from outside the agent (a forge's webhook, a watched remote or config file):
#: the ones `min_gap` spaces out, counted from the last pass they started.
OUTSIDE_TRIGGERS = frozenset({"webhook", "source", "config"})

PassKind = Literal["settled", "failed", "following"]


@dataclass(frozen=True)
class BackoffPolicy:
    """Exponential backoff with jitter and a cap (seconds)."""

    initial: float = 5.0
    multiplier: float = 2.0
    cap: float = 300.0
    jitter: float = 1.0

    def delay(self, failures: int, rand: float) -> float:
        """The wait after the `failures`-th failure in a row (1 = the first); rand in [0, 1)."""
        if failures < 1:
            return 0.0
        exponent = min(failures - 1, 64)  # 2.0**1024 overflows; the cap is reached long before
        return min(self.cap, self.initial * self.multiplier**exponent) + rand * self.jitter


@dataclass(frozen=True)
class Timing:
    """Everything the loop's schedule depends on besides the pass itself."""

    interval: float = 300.0
    jitter: float = 30.0
    backoff: BackoffPolicy = BackoffPolicy()
    follow_poll: float = 0.5  # while the helper works and its journal cannot be watched
    follow_watched: float = 2.0  # while it works and journal changes wake the loop anyway
    min_gap: float = 1.0


def effective_interval(machine_interval: float, spec_interval: float | None) -> float:
    """The interval to use: spec.interval when set (not the schema default), else the machine's."""
    if spec_interval is None or spec_interval <= 0 or spec_interval == SPEC_INTERVAL_DEFAULT:
        return machine_interval
    return spec_interval


def classify(*, error: bool, settled: bool) -> PassKind:
    """What a pass's result means for the schedule."""
    if error:
        return "failed"
    return "settled" if settled else "following"


def next_delay(
    kind: PassKind, failures: int, timing: Timing, rand: float, journal_watched: bool
) -> float:
    """Seconds from the end of a pass until the next one, unless a trigger comes first."""
    interval = timing.interval + rand * timing.jitter
    if kind == "failed":
        return min(timing.backoff.delay(failures, rand), interval)
    if kind == "following":
        return timing.follow_watched if journal_watched else timing.follow_poll
    return interval


def start_delay(reasons: Iterable[str], since_last_start: float | None, min_gap: float) -> float:
    """How long triggered reasons wait before their pass may start (0: at once)."""
    reasons = set(reasons)
    if since_last_start is None or reasons & URGENT_TRIGGERS or not reasons:
        return 0.0
    return max(0.0, min_gap - since_last_start)
