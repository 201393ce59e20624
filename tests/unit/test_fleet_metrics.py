"""What an agent tells the fleet, read from the status it wrote: Ready, since when, the helper."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from reconciler.core import decide as d
from reconciler.telemetry.fleet_metrics import helper_activity, ready_of


def at(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC).timestamp()


def status(ready: str, since: str, history: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "lastAppliedRevision": "r2",
        "conditions": [
            {"type": "Healthy", "status": "True", "reason": "Succeeded",
             "lastTransitionTime": "2026-01-01T00:00:00Z"},
            {"type": "Ready", "status": ready, "reason": "Succeeded", "lastTransitionTime": since},
        ],
        "history": history,
    }  # fmt: skip


APPLIED = {"revision": "r2", "result": "Succeeded", "finishedAt": "2026-01-01T10:05:00Z"}

CASES = [
    ("Ready since its transition", status("True", "2026-01-01T10:06:00Z", [APPLIED]),
     ("True", "Succeeded", at("2026-01-01T10:06:00Z"))),
    ("Ready all along: since the applied revision finished", status("True", "2026-01-01T09:00:00Z",
     [APPLIED, {**APPLIED, "revision": "r1", "finishedAt": "2026-01-01T08:00:00Z"}]),
     ("True", "Succeeded", at("2026-01-01T10:05:00Z"))),
    ("a rolled-back entry of the revision does not count", status("True", "2026-01-01T09:00:00Z",
     [{**APPLIED, "result": "RolledBack", "finishedAt": "2026-01-01T11:00:00Z"}]),
     ("True", "Succeeded", at("2026-01-01T09:00:00Z"))),
    ("no conditions yet", {}, ("Unknown", "", 0.0)),
]  # fmt: skip


@pytest.mark.parametrize(("doc", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_ready_and_since_when(doc: dict[str, Any], expected: tuple[str, str, float]) -> None:
    assert ready_of(doc) == expected


def test_what_the_helper_is_doing_in_one_word() -> None:
    assert helper_activity(d.WaitForHelper("op", "Verifying")) == "Verifying"
    assert helper_activity(d.Deploy("r")) == "Applying"
    assert helper_activity(d.Confirm("op", "r")) == "Verifying"
    assert helper_activity(d.Converged("r")) == "Idle"
    assert helper_activity(None) == "Idle"
