"""Freshness of the followed commit: the `SourceStale` condition against freeze attacks.

Owns one rule (docs/prebuilt.md, "Freshness"): when `[source] max_age` is set
and the commit the machine follows was committed longer ago than that, the
status carries `SourceStale=True` with the age; a fresh commit (CI re-signs a
heartbeat commit on the deploy branch) removes it, as kstatus drops an
abnormal-true condition once it is clear. Staleness is reported, never acted
on: nothing is deployed from a stale source that would not be deployed anyway.

Must not: read git or the clock; the commit time and now are passed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.common.durations import human_duration
from reconciler.core.conditions import Condition, remove_condition, set_condition

SOURCE_STALE = "SourceStale"


@dataclass(frozen=True)
class Freshness:
    revision: str
    age: float  # seconds since the commit was made (never negative)
    max_age: float  # 0: no limit
    stale: bool


def freshness(revision: str, committed_at: float, now: float, max_age: float) -> Freshness:
    """How old `revision` is, and whether that is older than `max_age` (0: never stale)."""
    age = max(0.0, now - committed_at)
    return Freshness(revision, age, max_age, stale=max_age > 0 and age > max_age)


def apply_freshness(
    conditions: Sequence[Condition], fresh: Freshness, now: str, generation: int | None = None
) -> tuple[Condition, ...]:
    """The conditions with SourceStale set while the source is stale, and gone once not."""
    if not fresh.stale:
        return remove_condition(conditions, SOURCE_STALE)
    message = (
        f"the followed commit {fresh.revision[:12]} is {human_duration(fresh.age)} old, older than "
        f"[source] max_age ({human_duration(fresh.max_age)}): the branch may be frozen by an "
        "attacker or CI stopped committing its heartbeat; deploys go on as before"
    )
    return set_condition(conditions, SOURCE_STALE, "True", "SourceStale", message, now, generation)
