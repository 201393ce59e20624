"""The one way pullnix writes a wall-clock time in its status: RFC 3339 UTC, to the second.

Owns the timestamp format of `status.json` (`lastPassAt`, condition
transitions), the agent's status (`startedAt` of the agent and of each
pass). The helper's journal writes microseconds instead (`operation.iso`),
for spans rebuilt from it.
"""

from __future__ import annotations

from datetime import UTC, datetime

FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_stamp(when: datetime | None = None) -> str:
    """`when` (default: now) as e.g. 2026-11-25T18:31:39Z."""
    return (when or datetime.now(UTC)).astimezone(UTC).strftime(FORMAT)
