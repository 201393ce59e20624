"""The one formatter of durations in messages: ages (SourceStale) and waits (the wave gate)."""

from __future__ import annotations

import pytest

from reconciler.common.durations import human_duration

DAY = 86400.0


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (42, "42s"),
        (42.9, "42s"),  # whole seconds, never rounded up
        (300, "5m"),
        (330, "5m"),  # from a minute on, an age leaves the seconds out
        (3 * 3600, "3h"),
        (3 * 3600 + 720, "3h 12m"),
        (3 * 3600 + 720 + 5, "3h 12m"),
        (DAY + 300, "1d"),  # the largest unit and the next one down, only
        (7 * DAY, "7d"),
        (9 * DAY + 4 * 3600, "9d 4h"),
        (400 * DAY, "400d"),
    ],
)
def test_ages_read_coarsely(seconds: float, text: str) -> None:
    assert human_duration(seconds) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (8, "8s"),
        (60, "1m"),
        (90, "1m30s"),  # a wait keeps its seconds
        (725, "12m5s"),
        (1800, "30m"),
        (3600, "1h"),
        (5400, "1h30m"),  # as a spec writes a soak
        (5405, "1h30m"),
        (36 * 3600, "36h"),  # no days
    ],
)
def test_waits_read_as_a_spec_writes_them(seconds: float, text: str) -> None:
    assert human_duration(seconds, compact=True) == text
