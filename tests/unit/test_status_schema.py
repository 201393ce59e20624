"""The CRD's status schema says what the agent really writes to status.json.

The status part is walked against what the agent writes: the conditions and
history entries (null where a field may be None), the keys of the
controller's status dict; tests/integration/test_status_schema.py checks a
real status.json after real deploys and rollbacks.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import status_validator
from reconciler.api.convert import camel
from reconciler.api.schema import openapi_schema
from reconciler.common.operation import CheckResult, Operation, Previous, State, iso
from reconciler.common.protocol import CHECK_KINDS, ApplyRequest
from reconciler.controller import status_doc
from reconciler.core.conditions import Condition
from reconciler.core.history import RESULTS, HistoryEntry, entry_from_operation
from reconciler.core.policy import Verdict
from reconciler.core.record import StoredRecord
from reconciler.core.status import Outcome
from reconciler.source import FetchResult
from tests.support.schemawalk import agree, optional_inner, walk

ROOT = Path(__file__).parent.parent.parent


def status_node(*path: str) -> dict[str, Any]:
    """The CRD's status schema node at `path` ("history", "healthChecks" step into items)."""
    node: dict[str, Any] = openapi_schema()["properties"]["status"]
    for name in path:
        node = node["properties"][name]
        node = node.get("items", node)
    return node


def agree_written(cls: type, node: dict[str, Any], where: str, *, omits_none: bool) -> None:
    """`cls.to_json()` writes every field under the schema's names: a field that may be None
    is written as null (nullable, required), or left out when `omits_none` (not required)."""
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name): f.name for f in dataclasses.fields(cls)}
    properties = node["properties"]
    assert set(fields) == set(properties), (
        f"{where}: writer {sorted(fields)} != schema {sorted(properties)}"
    )
    required = set(node.get("required", []))
    for name, attribute in fields.items():
        at, sub, hint = f"{where}.{name}", properties[name], hints[attribute]
        inner = optional_inner(hint)
        nullable = inner is not None and not omits_none
        assert (name in required) == (inner is None or not omits_none), f"{at}: required"
        assert bool(sub.get("nullable")) == nullable, f"{at}: nullable iff written as null"
        hint = hint if inner is None else inner
        if typing.get_origin(hint) is tuple:  # entries of their own shape, walked elsewhere
            assert sub["type"] == "array", at
        else:
            agree(hint, sub, at)


def test_every_status_field_is_described() -> None:
    for path, node in walk(openapi_schema()["properties"]["status"], ".status"):
        if not path.endswith("]"):  # list items are described by their list
            assert node.get("description"), f"{path}: describe it for `kubectl explain`"


def test_conditions_and_history_entries_agree_with_the_schema_field_for_field() -> None:
    agree_written(Condition, status_node("conditions"), ".conditions", omits_none=True)
    agree_written(HistoryEntry, status_node("history"), ".history", omits_none=False)
    assert status_node("history")["properties"]["result"]["enum"] == list(RESULTS)
    check = status_node("history", "healthChecks")
    assert check["properties"]["kind"]["enum"] == list(CHECK_KINDS)


def test_the_agreement_of_written_fields_notices_a_difference() -> None:
    @dataclasses.dataclass(frozen=True)
    class Entry:  # the history entry before the audit: no operationId, no kind
        revision: str
        store_path: str
        generation: int | None
        result: str
        started_at: str
        finished_at: str
        health_checks: tuple[Any, ...] = ()
        closure_diff: str | None = None
        trace_id: str | None = None
        message: str = ""

    with pytest.raises(AssertionError, match="operationId"):
        agree_written(Entry, status_node("history"), ".history", omits_none=False)
    node = copy.deepcopy(status_node("history"))
    del node["properties"]["traceId"]["nullable"]
    with pytest.raises(AssertionError, match="traceId: nullable"):
        agree_written(HistoryEntry, node, ".history", omits_none=False)


def status_keys_written() -> tuple[set[str], set[str]]:
    """The keys of the status dict the controller writes, and of its `source`: the document
    `status_doc.status_document` makes after a pass that read everything."""
    fetch = FetchResult(
        url="file:///srv/fleet.git",
        branch="main",
        ref="refs/heads/main",
        tip_sha="c" * 40,
        fetched=True,
    )
    doc = status_doc.status_document(
        "edge-01",
        {},
        Verdict(Outcome("Ready", "Succeeded", "applied"), StoredRecord()),
        (),
        (),
        deployment=None,
        fetch=fetch,
        system=None,
        now=iso(1.8e9),
    )
    return set(doc["status"]), set(doc["status"]["source"])


def test_the_status_the_controller_writes_has_exactly_the_schemas_fields() -> None:
    keys, source = status_keys_written()
    status = openapi_schema()["properties"]["status"]
    assert keys == set(status["properties"]) == set(status["required"])
    assert source == set(status["properties"]["source"]["properties"])


def operation(state: str, kind: str = "apply", **fields: Any) -> Operation:
    """A finished helper operation as the helper's status answers it."""
    request = ApplyRequest(
        store_path="/nix/store/" + "a" * 32 + "-nixos-system",
        revision=fields.pop("revision", "c" * 40),
        traceparent=fields.pop("traceparent", ""),
    )
    return Operation(
        id="op-1",
        kind=kind,
        request=request,
        previous=Previous(None, None, None),
        state=State(state),
        created_at=iso(1.8e9),
        finished_at=iso(1.8e9 + 5),
        **fields,
    )


def check(ok: bool) -> CheckResult:
    return CheckResult(
        "api",
        "http",
        ok,
        "200 OK" if ok else "refused",
        1 if ok else 4,
        iso(1.8e9 + 1),
        iso(1.8e9 + 2),
    )


TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
ENTRIES = {
    "deployed": entry_from_operation(
        operation("Succeeded", traceparent=TRACEPARENT, generation=7, checks=(check(True),)),
        "1 package changed",
    ),
    "rolled back": entry_from_operation(
        operation(
            "RolledBack",
            traceparent=TRACEPARENT,
            checks=(check(True), check(False)),
            message="health check api failed",
        ),
        "",
    ),
    "failed, no trace": entry_from_operation(operation("Failed", message="activation"), None),
    "rollback asked for": entry_from_operation(
        operation("Succeeded", kind="rollback", revision="", traceparent=TRACEPARENT, generation=6)
    ),
    "reboot": entry_from_operation(
        operation("Failed", kind="reboot", message="rebooted, but another system came up")
    ),
}


def status_document(history: list[HistoryEntry]) -> dict[str, Any]:
    conditions = [
        Condition("Ready", "True", "Succeeded", "applied", "2026-01-01T00:00:00Z", 3),
        Condition("Healthy", "Unknown", "Progressing", "", "2026-01-01T00:00:00Z"),
    ]
    return {
        "observedGeneration": 3,
        "conditions": [c.to_json() for c in conditions],
        "lastAppliedRevision": "c" * 40,
        "lastAttemptedRevision": "c" * 40,
        "currentGeneration": 7,
        "currentSystem": "/nix/store/x",
        "source": {
            "url": "file:///srv/fleet.git",
            "branch": "main",
            "revision": "c" * 40,
            "skipped": ["https://down.example: connection refused"],
        },
        "suspended": False,
        "helperConfigError": None,
        "lastPassAt": "2026-01-01T00:00:05Z",
        "history": [h.to_json() for h in history],
    }


@pytest.mark.parametrize("name", ENTRIES)
def test_a_history_entry_from_each_kind_of_helper_outcome_fits_the_schema(name: str) -> None:
    doc = status_document([ENTRIES[name]])
    assert list(status_validator().iter_errors(doc)) == []


def test_a_status_before_anything_happened_fits_the_schema() -> None:
    doc = {
        **status_document([]),
        "lastAppliedRevision": None,
        "lastAttemptedRevision": None,
        "currentGeneration": None,
        "currentSystem": None,
        "source": None,
    }
    assert list(status_validator().iter_errors(doc)) == []


def set_at(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        ("sourceUrl", "file:///srv", "'sourceUrl' was unexpected"),
        ("source.token", "x", "'token' was unexpected"),
        ("suspended", None, "None is not of type 'boolean'"),
        ("lastPassAt", "yesterday", "'yesterday' is not a 'date-time'"),
        ("history.0.result", "Maybe", "'Maybe' is not one of"),
        ("history.0.kind", "upgrade", "'upgrade' is not one of"),
        ("history.0.startedAt", "", "'' is not a 'date-time'"),
        ("history.0.storePath", None, "None is not of type 'string'"),
        ("history.0.traceId", "X" * 32, "does not match"),
        ("history.0.healthChecks.0.result", "Passed", "'result' was unexpected"),
        ("conditions.1.type", "Ready", "is already used by entry [0]"),
    ],
)
def test_the_status_schema_refuses_what_the_agent_never_writes(
    path: str, value: Any, message: str
) -> None:
    doc = set_at(status_document([ENTRIES["deployed"]]), path, value)
    (error,) = status_validator().iter_errors(doc)
    assert message in error.message
