"""SourceStale: set with the age while the followed commit is older than max_age, gone after."""

from __future__ import annotations

import pytest

from reconciler.core.conditions import Condition, find
from reconciler.core.freshness import apply_freshness, freshness

DAY = 86400.0
SHA = "ab" * 20


@pytest.mark.parametrize(
    ("age", "max_age", "stale"),
    [
        (8 * DAY, 7 * DAY, True),
        (6 * DAY, 7 * DAY, False),
        (7 * DAY, 7 * DAY, False),  # exactly max_age is not older than it
        (400 * DAY, 0.0, False),  # off
        (-60.0, 7 * DAY, False),  # a commit dated in the future is not stale
    ],
)
def test_a_commit_older_than_max_age_is_stale(age: float, max_age: float, stale: bool):
    now = 1_800_000_000.0
    assert freshness(SHA, now - age, now, max_age).stale is stale


def test_stale_sets_the_condition_with_the_age_and_fresh_removes_it():
    now = 1_800_000_000.0
    ready = Condition("Ready", "True", "Succeeded", "", "t0")
    stale = apply_freshness([ready], freshness(SHA, now - 9 * DAY - 3600 * 4, now, 7 * DAY), "t1")
    cond = find(stale, "SourceStale")
    assert cond is not None
    assert (cond.status, cond.reason) == ("True", "SourceStale")
    assert "abababababab is 9d 4h old, older than [source] max_age (7d)" in cond.message
    assert find(stale, "Ready") == ready  # reported, never acted on
    again = apply_freshness(stale, freshness(SHA, now - 10 * DAY, now, 7 * DAY), "t2")
    assert find(again, "SourceStale").last_transition_time == "t1"  # type: ignore[union-attr]
    fresh = apply_freshness(again, freshness(SHA, now - 60, now, 7 * DAY), "t3")
    assert find(fresh, "SourceStale") is None
    assert find(fresh, "Ready") == ready
