"""Condition bookkeeping follows the Kubernetes rule for lastTransitionTime."""

from __future__ import annotations

import pytest

from reconciler.core.conditions import (
    Condition,
    find,
    is_true,
    remove_condition,
    set_condition,
)

T0, T1 = "2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"


def test_transition_time_is_kept_while_status_stays_the_same() -> None:
    conds = set_condition((), "Ready", "False", "Progressing", "building", T0)
    conds = set_condition(conds, "Ready", "False", "BuildFailed", "exit 1", T1)
    ready = find(conds, "Ready")
    assert ready is not None
    assert ready.last_transition_time == T0
    assert (ready.reason, ready.message) == ("BuildFailed", "exit 1")


def test_transition_time_moves_when_status_changes() -> None:
    conds = set_condition((), "Ready", "False", "Progressing", "", T0)
    conds = set_condition(conds, "Ready", "True", "Succeeded", "applied abc", T1)
    ready = find(conds, "Ready")
    assert ready is not None
    assert ready.last_transition_time == T1
    assert is_true(conds, "Ready")


def test_conditions_are_listed_ready_first_and_unique() -> None:
    conds = set_condition((), "Stalled", "True", "BuildFailed", "", T0)
    conds = set_condition(conds, "Ready", "False", "BuildFailed", "", T0)
    conds = set_condition(conds, "Ready", "False", "BuildFailed", "", T1)
    assert [c.type for c in conds] == ["Ready", "Stalled"]
    assert [c.type for c in remove_condition(conds, "Stalled")] == ["Ready"]


def test_json_round_trip_uses_kubernetes_field_names() -> None:
    cond = Condition("Healthy", "Unknown", "Progressing", "checking", T0, observed_generation=4)
    doc = cond.to_json()
    assert doc == {
        "type": "Healthy",
        "status": "Unknown",
        "reason": "Progressing",
        "message": "checking",
        "lastTransitionTime": T0,
        "observedGeneration": 4,
    }
    assert Condition.from_json(doc) == cond


def test_a_status_other_than_true_false_unknown_is_refused() -> None:
    with pytest.raises(ValueError, match="is not True, False or Unknown"):
        Condition.from_json(
            {"type": "Ready", "status": "yes", "reason": "X", "lastTransitionTime": T0}
        )
