"""The agent loop's timing as tables: interval with jitter, capped backoff, following, bursts."""

from __future__ import annotations

import pytest

from reconciler.core.schedule import (
    BackoffPolicy,
    Timing,
    classify,
    effective_interval,
    next_delay,
    start_delay,
)

TIMING = Timing(
    interval=600.0, jitter=60.0, backoff=BackoffPolicy(initial=5.0, cap=120.0, jitter=1.0)
)


@pytest.mark.parametrize(
    ("failures", "rand", "expected"),
    [
        (0, 0.5, 0.0),
        (1, 0.0, 5.0),
        (2, 0.0, 10.0),
        (3, 0.0, 20.0),
        (5, 0.0, 80.0),
        (6, 0.0, 120.0),  # capped
        (1000, 0.0, 120.0),  # no overflow however long the outage
        (1, 0.5, 5.5),  # jitter on top
        (6, 0.99, 120.99),
    ],
)
def test_backoff_doubles_up_to_its_cap_with_jitter(
    failures: int, rand: float, expected: float
) -> None:
    assert TIMING.backoff.delay(failures, rand) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("kind", "failures", "rand", "watched", "expected"),
    [
        ("settled", 0, 0.0, False, 600.0),
        ("settled", 0, 0.5, False, 630.0),  # interval + rand * jitter
        ("failed", 1, 0.0, False, 5.0),
        ("failed", 4, 0.0, True, 40.0),
        ("failed", 50, 0.0, False, 120.0),
        ("following", 0, 0.7, False, 0.5),  # poll the helper's status
        ("following", 0, 0.7, True, 2.0),  # its journal wakes the loop anyway
    ],
)
def test_next_delay(kind: str, failures: int, rand: float, watched: bool, expected: float) -> None:
    assert next_delay(kind, failures, TIMING, rand, watched) == pytest.approx(expected)  # type: ignore[arg-type]


def test_an_error_never_waits_longer_than_success_would() -> None:
    short = Timing(interval=30.0, jitter=0.0, backoff=BackoffPolicy(initial=5.0, cap=300.0))
    assert next_delay("failed", 10, short, 0.0, False) == 30.0


@pytest.mark.parametrize(
    ("error", "settled", "kind"),
    [
        (True, False, "failed"),
        (True, True, "failed"),
        (False, True, "settled"),
        (False, False, "following"),
    ],
)
def test_classify(error: bool, settled: bool, kind: str) -> None:
    assert classify(error=error, settled=settled) == kind


@pytest.mark.parametrize(
    ("machine", "spec", "expected"),
    [
        (300.0, None, 300.0),
        (60.0, 900.0, 900.0),  # the spec's interval wins
        (60.0, 300.0, 60.0),  # the schema default counts as unset
        (60.0, 0.0, 60.0),
    ],
)
def test_effective_interval(machine: float, spec: float | None, expected: float) -> None:
    assert effective_interval(machine, spec) == expected


@pytest.mark.parametrize(
    ("reasons", "since", "expected"),
    [
        ({"webhook"}, None, 0.0),  # the first pass never waits
        ({"webhook"}, 0.2, 0.8),  # a burst waits out the gap
        ({"source"}, 5.0, 0.0),
        ({"webhook", "now"}, 0.2, 0.0),  # a user's reconcile --now does not wait
        ({"helper"}, 0.1, 0.0),  # nor does the helper's progress
        (set(), 0.1, 0.0),
    ],
)
def test_start_delay(reasons: set[str], since: float | None, expected: float) -> None:
    assert start_delay(reasons, since, 1.0) == pytest.approx(expected)
