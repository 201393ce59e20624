"""apply_outcome and exit_code as tables: each phase's conditions, and the CLI's verdict."""

from __future__ import annotations

import pytest

from reconciler.core.conditions import Condition
from reconciler.core.status import Outcome, Phase, apply_outcome, exit_code

NOW, EARLIER = "2026-11-25T18:31:39Z", "2026-11-25T18:00:00Z"
READY_BEFORE = (
    Condition("Ready", "True", "Succeeded", "applied revision aaaa", EARLIER, 1),
    Condition("Healthy", "True", "Succeeded", "every health check passed", EARLIER, 1),
)

# (why, phase, healthy, the conditions before, {type: (status, reason)} after)
CASES: list[tuple[str, Phase, bool | None, tuple[Condition, ...], dict[str, tuple[str, str]]]] = [
    (
        "first pass, converged: Ready, Healthy unknown until a deploy is verified",
        "Ready",
        None,
        (),
        {"Ready": ("True", "R"), "Healthy": ("Unknown", "Progressing")},
    ),
    (
        "deploying: Reconciling, Ready unknown",
        "Progressing",
        None,
        READY_BEFORE,
        {
            "Ready": ("Unknown", "R"),
            "Reconciling": ("True", "R"),
            "Healthy": ("True", "Succeeded"),
        },
    ),
    (
        "stalled: Stalled true, Ready false, no Reconciling",
        "Stalled",
        None,
        (*READY_BEFORE, Condition("Reconciling", "True", "Progressing", "", EARLIER, 1)),
        {"Ready": ("False", "R"), "Stalled": ("True", "R"), "Healthy": ("True", "Succeeded")},
    ),
    (
        "failing after a rollback: Ready false, Healthy false",
        "Failing",
        False,
        READY_BEFORE,
        {"Ready": ("False", "R"), "Healthy": ("False", "HealthCheckFailed")},
    ),
    (
        "suspended: Ready keeps its status with the reason Suspended",
        "Suspended",
        None,
        READY_BEFORE,
        {"Ready": ("True", "R"), "Healthy": ("True", "Succeeded")},
    ),
    (
        "suspended before any pass: Ready unknown",
        "Suspended",
        None,
        (),
        {"Ready": ("Unknown", "R"), "Healthy": ("Unknown", "Progressing")},
    ),
    (
        "ready again after a stall: Stalled goes",
        "Ready",
        True,
        (*READY_BEFORE, Condition("Stalled", "True", "BuildFailed", "", EARLIER, 1)),
        {"Ready": ("True", "R"), "Healthy": ("True", "Succeeded")},
    ),
]


@pytest.mark.parametrize(
    ("why", "phase", "healthy", "before", "after"), CASES, ids=[c[0] for c in CASES]
)
def test_an_outcome_sets_the_conditions(
    why: str,
    phase: Phase,
    healthy: bool | None,
    before: tuple[Condition, ...],
    after: dict[str, tuple[str, str]],
) -> None:
    conditions = apply_outcome(before, Outcome(phase, "R", "m", healthy), NOW, 2)
    assert {c.type: (c.status, c.reason) for c in conditions} == after, why
    assert next(c for c in conditions if c.type == "Ready").observed_generation == 2


@pytest.mark.parametrize(
    ("ready", "healthy", "code"),
    [
        ("True", "True", 0),
        ("True", "Unknown", 0),
        ("True", None, 0),
        ("True", "False", 3),
        ("False", "True", 3),
        ("Unknown", "True", 3),
        (None, None, 3),
    ],
)
def test_the_exit_code_is_0_only_when_ready_and_not_unhealthy(
    ready: str | None, healthy: str | None, code: int
) -> None:
    conditions = tuple(
        Condition(kind, status, "R", "m", NOW, 1)
        for kind, status in (("Ready", ready), ("Healthy", healthy))
        if status is not None
    )
    assert exit_code(conditions) == code
