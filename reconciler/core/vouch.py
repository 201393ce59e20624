"""Whether `pullnix status` can vouch for what status.json says.

Owns one rule: status.json is only as good as the pass that last wrote it. A
pass that failed and could not write it (a full disk, a read-only state dir)
leaves the last `Ready=True` behind, so the status is vouched for only when the
running agent's last pass did not fail and the last pass is recent enough for
the interval (two intervals, the jitter and `STALE_GRACE` for a backoff). A
machine with no agent running and no recent `reconcile --once` is not vouched
for either: nobody is looking. Pure: the time and the agent's answer are given.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

#: On top of two intervals and the jitter: the longest backoff after failed passes.
STALE_GRACE = 300.0


def doubt(
    last_pass_at: str | None,
    now: datetime,
    interval: float,
    jitter: float,
    agent_last_pass: Mapping[str, Any] | None,
) -> str | None:
    """Why status.json cannot be trusted now; None when it can."""
    if agent_last_pass is not None and agent_last_pass.get("error"):
        return (
            f"the running agent's last pass failed ({agent_last_pass.get('reason')}: "
            f"{agent_last_pass.get('message')})"
        )
    if last_pass_at is None:
        return "status.json does not say when the last pass ran"
    try:
        then = datetime.fromisoformat(last_pass_at.replace("Z", "+00:00"))
    except ValueError:
        return f"status.json has an unreadable lastPassAt {last_pass_at!r}"
    age = (now - then).total_seconds()
    allowed = 2 * interval + jitter + STALE_GRACE
    if age > allowed:
        return (
            f"the last pass ran {age:.0f}s ago, longer than the {allowed:.0f}s its interval "
            "allows: no agent is running, or it cannot write its status"
        )
    return None
