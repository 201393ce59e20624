"""A reboot the helper carried out is history, not a deployment: it neither applies nor
fails a revision, whatever its result."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from reconciler.core.decide import AgentRecord, Failure
from reconciler.core.history import HistoryEntry, ingest

RECORD = AgentRecord(
    last_applied_revision="a" * 40,
    last_applied_store_path="/nix/store/" + "a" * 32 + "-nixos-system",
    failed=MappingProxyType({"b" * 40: Failure("RolledBack", "old")}),
    retry_revision="b" * 40,
)


@pytest.mark.parametrize("result", ["Succeeded", "Failed"])
def test_a_reboot_leaves_the_record_as_it_was(result: str) -> None:
    entry = HistoryEntry(
        operation_id="op-1",
        kind="reboot",
        revision="a" * 40,
        store_path="/nix/store/" + "c" * 32 + "-nixos-system",
        generation=None,
        result=result,
        started_at="2026-12-01T00:00:00Z",
        finished_at="2026-12-01T00:01:00Z",
        message="rebooted",
    )
    assert ingest(RECORD, entry) == RECORD
