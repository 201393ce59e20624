"""history.ingest as a table: what each finished helper operation does to the agent's record."""

from __future__ import annotations

from dataclasses import replace
from types import MappingProxyType

import pytest

from reconciler.core.decide import AgentRecord, Failure
from reconciler.core.history import HistoryEntry, ingest

OLD, NEW, OTHER = "a" * 40, "b" * 40, "c" * 40
SYS_OLD, SYS_NEW = ("/nix/store/" + c * 32 + "-nixos-system" for c in "ab")

APPLIED_OLD = AgentRecord(last_applied_revision=OLD, last_applied_store_path=SYS_OLD)


def entry(
    result: str, revision: str = NEW, kind: str = "apply", store: str = SYS_NEW
) -> HistoryEntry:
    return HistoryEntry("op-1", revision, store, 5, result, "t0", "t1", message="why", kind=kind)


def record(**changes: object) -> AgentRecord:
    return replace(APPLIED_OLD, **changes)  # type: ignore[arg-type]


def failed(**by_revision: Failure) -> MappingProxyType[str, Failure]:
    return MappingProxyType({{"old": OLD, "new": NEW}[k]: v for k, v in by_revision.items()})


CASES: list[tuple[str, AgentRecord, HistoryEntry, AgentRecord]] = [
    (
        "a deploy succeeded: it is the last applied",
        APPLIED_OLD,
        entry("Succeeded"),
        record(last_applied_revision=NEW, last_applied_store_path=SYS_NEW),
    ),
    (
        "a deploy of a commit that failed before succeeded: the failure is forgotten",
        record(failed=failed(new=Failure("RolledBack", "x")), retry_revision=NEW),
        entry("Succeeded"),
        record(last_applied_revision=NEW, last_applied_store_path=SYS_NEW),
    ),
    (
        "a deploy was rolled back: the commit is marked, the applied one stays",
        APPLIED_OLD,
        entry("RolledBack"),
        record(failed=failed(new=Failure("RolledBack", "why"))),
    ),
    (
        "a deploy failed: the commit is marked ActivationFailed",
        APPLIED_OLD,
        entry("Failed"),
        record(failed=failed(new=Failure("ActivationFailed", "why"))),
    ),
    (
        "a retry of the commit is used up by its failure",
        record(retry_revision=NEW),
        entry("RolledBack"),
        record(failed=failed(new=Failure("RolledBack", "why"))),
    ),
    (
        "a retry of another commit stays",
        record(retry_revision=OTHER),
        entry("RolledBack"),
        record(failed=failed(new=Failure("RolledBack", "why")), retry_revision=OTHER),
    ),
    (
        "a failed operation with no revision marks nothing",
        APPLIED_OLD,
        entry("Failed", revision=""),
        APPLIED_OLD,
    ),
    (
        "a rollback asked for: the system it left is marked, what runs is the last applied",
        APPLIED_OLD,
        entry("Succeeded", revision="", kind="rollback", store=SYS_NEW),
        record(
            last_applied_revision=None,
            last_applied_store_path=SYS_NEW,
            failed=failed(old=Failure("RolledBack", "why")),
        ),
    ),
]


@pytest.mark.parametrize(("why", "before", "finished", "after"), CASES, ids=[c[0] for c in CASES])
def test_a_finished_operation_changes_the_record(
    why: str, before: AgentRecord, finished: HistoryEntry, after: AgentRecord
) -> None:
    assert ingest(before, finished) == after, why
