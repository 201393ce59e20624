"""A bounded receiver's policy as tables: who is overdue, and who makes room for a newcomer."""

from __future__ import annotations

import pytest

from reconciler.core.connections import (
    Admission,
    Admit,
    Conn,
    Phase,
    Refuse,
    Shed,
    admit,
    overdue,
)

R, W, L = Phase.READING, Phase.WORKING, Phase.LINGERING


def conn(key: int, accepted: float, phase: Phase = R, deadline: float = 100.0) -> Conn:
    return Conn(key, accepted, phase, deadline)


ADMISSIONS: list[tuple[str, list[Conn], int, Admission]] = [
    ("an empty table lets in", [], 2, Admit()),
    ("below the cap lets in", [conn(1, 0.0)], 2, Admit()),
    ("at the cap sheds the oldest reader", [conn(1, 5.0), conn(2, 1.0)], 2, Shed(2)),
    ("a lingering refusal may be shed too", [conn(1, 1.0, W), conn(2, 2.0, L)], 2, Shed(2)),
    ("a connection at work is never shed", [conn(1, 0.0, W), conn(2, 1.0)], 2, Shed(2)),
    ("every connection at work: refuse", [conn(1, 0.0, W), conn(2, 1.0, W)], 2, Refuse()),
    ("over the cap (a cap lowered) still sheds", [conn(k, float(k)) for k in range(5)], 3, Shed(0)),
    ("a tie in age goes to the lower key", [conn(7, 1.0), conn(3, 1.0)], 2, Shed(3)),
    ("a cap of zero with nothing open refuses", [], 0, Refuse()),
]


@pytest.mark.parametrize(
    ("table", "limit", "expected"),
    [case[1:] for case in ADMISSIONS],
    ids=[case[0] for case in ADMISSIONS],
)
def test_admission_at_and_below_the_cap(table: list[Conn], limit: int, expected: Admission) -> None:
    assert admit(table, limit) == expected


OVERDUE: list[tuple[str, list[Conn], float, list[int]]] = [
    ("nothing open", [], 10.0, []),
    ("before the deadline", [conn(1, 0.0, deadline=10.0)], 9.99, []),
    ("at the deadline", [conn(1, 0.0, deadline=10.0)], 10.0, [1]),
    (
        "every phase has a deadline, oldest first",
        [conn(1, 2.0, W, 5.0), conn(2, 1.0, L, 6.0), conn(3, 0.0, R, 50.0)],
        7.0,
        [2, 1],
    ),
]


@pytest.mark.parametrize(
    ("table", "now", "expected"),
    [case[1:] for case in OVERDUE],
    ids=[case[0] for case in OVERDUE],
)
def test_overdue_connections(table: list[Conn], now: float, expected: list[int]) -> None:
    assert overdue(table, now) == expected
