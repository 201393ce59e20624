"""Status: how the outcome of a pass becomes conditions, the way kstatus and Flux read them.

Owns the mapping from what a pass found (an action of `decide`, an error, a
helper verdict) to the four conditions `Ready`, `Reconciling`, `Stalled` and
`Healthy`, each with a CamelCase reason and a message a user can act on, and
the exit code the CLI derives from them. Pure: the time is passed in.

kstatus semantics: `Reconciling` and `Stalled` are abnormal-true conditions,
present only while true; `Ready` is the summary; `Healthy` reports the last
health verdict of the helper (Unknown before any).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from reconciler.core.conditions import (
    HEALTHY,
    READY,
    RECONCILING,
    STALLED,
    Condition,
    ConditionStatus,
    find,
    remove_condition,
    set_condition,
)

Phase = Literal["Ready", "Progressing", "Stalled", "Failing", "Suspended"]


@dataclass(frozen=True)
class Outcome:
    """What a pass ended in, as the status needs it.

    phase: Ready (converged), Progressing (work under way or retrying soon),
    Stalled (waits for a new commit or an operator), Failing (not ready, but a
    later pass may fix it by itself: an unreachable remote, drift being
    reported), Suspended (nothing is done until resumed).
    """

    phase: Phase
    reason: str
    message: str
    healthy: bool | None = None  # the helper's last verdict; None: no news this pass


def apply_outcome(
    conditions: Sequence[Condition],
    outcome: Outcome,
    now: str,
    observed_generation: int | None = None,
) -> tuple[Condition, ...]:
    """The conditions after `outcome`."""
    gen = observed_generation
    conds = tuple(conditions)
    phase = outcome.phase
    if phase == "Suspended":
        ready = find(conds, READY)
        status: ConditionStatus = ready.status if ready is not None else "Unknown"
        conds = set_condition(conds, READY, status, outcome.reason, outcome.message, now, gen)
        conds = remove_condition(conds, RECONCILING)
    else:
        ready_status: ConditionStatus = {"Ready": "True", "Progressing": "Unknown"}.get(
            phase, "False"
        )  # type: ignore[assignment]
        conds = set_condition(conds, READY, ready_status, outcome.reason, outcome.message, now, gen)
        if phase == "Progressing":
            conds = set_condition(
                conds, RECONCILING, "True", outcome.reason, outcome.message, now, gen
            )
        else:
            conds = remove_condition(conds, RECONCILING)
        if phase == "Stalled":
            conds = set_condition(conds, STALLED, "True", outcome.reason, outcome.message, now, gen)
        else:
            conds = remove_condition(conds, STALLED)
    if outcome.healthy is not None:
        conds = set_condition(
            conds,
            HEALTHY,
            "True" if outcome.healthy else "False",
            "Succeeded" if outcome.healthy else "HealthCheckFailed",
            "every health check passed" if outcome.healthy else outcome.message,
            now,
            gen,
        )
    elif find(conds, HEALTHY) is None:
        conds = set_condition(
            conds,
            HEALTHY,
            "Unknown",
            "Progressing",
            "no deployment has been verified yet",
            now,
            gen,
        )
    return conds


def exit_code(conditions: Sequence[Condition]) -> int:
    """The CLI's verdict: 0 when Ready and not unhealthy, 3 otherwise."""
    ready = find(conditions, READY)
    healthy = find(conditions, HEALTHY)
    if ready is None or ready.status != "True":
        return 3
    if healthy is not None and healthy.status == "False":
        return 3
    return 0
