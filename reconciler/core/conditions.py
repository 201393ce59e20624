"""Kubernetes-style conditions: the bookkeeping, not the policy.

Owns the Condition value and the rule every Kubernetes controller follows:
`lastTransitionTime` moves only when `status` changes, so an operator can see
how long a machine has been not Ready. The condition types pullnix reports
(kstatus semantics, as Flux does) are `Ready`, `Reconciling`, `Stalled` and
`Healthy`. Pure: time is passed in, nothing is read or written.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

ConditionStatus = Literal["True", "False", "Unknown"]

READY = "Ready"
RECONCILING = "Reconciling"
STALLED = "Stalled"
HEALTHY = "Healthy"
#: The order conditions are listed in, the summary first.
CONDITION_TYPES = (READY, RECONCILING, STALLED, HEALTHY)


@dataclass(frozen=True)
class Condition:
    type: str
    status: ConditionStatus
    reason: str
    message: str
    last_transition_time: str
    observed_generation: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.type,
            "status": self.status,
            "reason": self.reason,
            "message": self.message,
            "lastTransitionTime": self.last_transition_time,
        }
        if self.observed_generation is not None:
            doc["observedGeneration"] = self.observed_generation
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Condition:
        status = doc["status"]
        if status not in ("True", "False", "Unknown"):
            raise ValueError(
                f"condition {doc.get('type')!r}: status {status!r} is not True, False or Unknown"
            )
        return cls(
            type=str(doc["type"]),
            status=status,
            reason=str(doc["reason"]),
            message=str(doc.get("message", "")),
            last_transition_time=str(doc["lastTransitionTime"]),
            observed_generation=doc.get("observedGeneration"),
        )


def find(conditions: Sequence[Condition], type_: str) -> Condition | None:
    """The condition of `type_`, if present."""
    return next((c for c in conditions if c.type == type_), None)


def is_true(conditions: Sequence[Condition], type_: str) -> bool:
    found = find(conditions, type_)
    return found is not None and found.status == "True"


def set_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    now: str,
    observed_generation: int | None = None,
) -> tuple[Condition, ...]:
    """Return `conditions` with `type_` set; its transition time moves only on a status change."""
    old = find(conditions, type_)
    new = Condition(type_, status, reason, message, now, observed_generation)
    if old is not None and old.status == status:
        new = replace(new, last_transition_time=old.last_transition_time)
    others = [c for c in conditions if c.type != type_]
    return _ordered([*others, new])


def remove_condition(conditions: Sequence[Condition], type_: str) -> tuple[Condition, ...]:
    """Return `conditions` without `type_` (kstatus drops abnormal-true conditions when clear)."""
    return tuple(c for c in conditions if c.type != type_)


def _ordered(conditions: Sequence[Condition]) -> tuple[Condition, ...]:
    rank = {t: i for i, t in enumerate(CONDITION_TYPES)}
    return tuple(sorted(conditions, key=lambda c: (rank.get(c.type, len(rank)), c.type)))
