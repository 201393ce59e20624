"""The CRD in crds/ is a real CRD, the one schema of pullnix.yaml, and agrees with the model.

The dataclasses of reconciler/core/model.py and the CRD's openAPIV3Schema are
walked together, field for field and nested: the same names (snake_case and
camelCase), the same types, required where there is no default, and the
same defaults. The status part is walked against what the agent writes: the
conditions and history entries (null where a field may be None), the keys of
the controller's status dict; tests/integration/test_status_schema.py checks
a real status.json.
"""

from __future__ import annotations

import ast
import copy
import dataclasses
import json
import re
import types
import typing
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.api import schema_json, status_validator
from reconciler.api.convert import camel, value_from_data, value_to_data
from reconciler.api.schema import (
    api_version,
    apply_defaults,
    crd,
    document_schema,
    kind,
    openapi_schema,
)
from reconciler.api.violations import PATTERN_HINTS
from reconciler.core import model
from reconciler.core.conditions import Condition
from reconciler.core.history import RESULTS, HistoryEntry, entry_from_operation
from reconciler.helper import journal
from reconciler.helper.durations import DURATION_PATTERN
from reconciler.helper.operation import CheckResult, Operation, Previous, State, iso
from reconciler.helper.protocol import CHECK_KINDS, ApplyRequest

ROOT = Path(__file__).parent.parent.parent
CRD_FILE = ROOT / "crds" / "nixosdeployment.yaml"
PACKAGED = ROOT / "reconciler" / "api" / "nixosdeployment.yaml"


def walk(node: Any, path: str = "") -> typing.Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node below `node`, with a readable path."""
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            yield from walk(node[key], f"{path}[{key}]")


def test_the_crd_is_a_crd_for_nixosdeployments_in_pullnix_dev() -> None:
    doc = crd()
    assert (doc["apiVersion"], doc["kind"]) == ("apiextensions.k8s.io/v1",
                                                "CustomResourceDefinition")
    spec = doc["spec"]
    assert doc["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "pullnix.dev", "NixOSDeployment", "nixosdeployments")
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1alpha1", True, True)
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["Ready"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Revision"] == ".status.lastAppliedRevision"
    assert columns["Age"] == ".metadata.creationTimestamp"
    assert (api_version(), kind()) == (model.API_VERSION, model.KIND)


def test_the_schema_is_structural_as_the_api_server_requires() -> None:
    for path, node in walk(openapi_schema()):
        assert "type" in node, f"{path}: every node needs a type"
        assert "$ref" not in node, f"{path}: CRDs cannot use $ref"
        assert node.get("additionalProperties") is not False, (
            f"{path}: the API server refuses additionalProperties: false (it prunes instead)")
        assert not ("properties" in node and "additionalProperties" in node), path
        for branch in node.get("oneOf", []):
            assert set(branch) <= {"required"}, f"{path}: oneOf branches only constrain"
        if "pattern" in node:
            assert "(?" not in node["pattern"], f"{path}: RE2 has no lookaround"
            re.compile(node["pattern"])


def test_metadata_constrains_only_the_name_as_the_api_server_requires() -> None:
    metadata = openapi_schema()["properties"]["metadata"]
    assert set(metadata) == {"type", "properties"}
    assert set(metadata["properties"]) == {"name"}
    assert document_schema()["properties"]["metadata"]["required"] == ["name"]


def test_the_packaged_copy_is_the_crd() -> None:
    assert PACKAGED.is_symlink()
    assert PACKAGED.resolve() == CRD_FILE.resolve()
    assert yaml.safe_load(CRD_FILE.read_text()) == crd()


def test_every_duration_uses_the_one_duration_grammar() -> None:
    durations = [path for path, node in walk(openapi_schema())
                 if node.get("type") == "string" and "ms|s|m|h" in node.get("pattern", "")]
    assert len(durations) >= 4
    for path, node in walk(openapi_schema()):
        if path in durations:
            assert node["pattern"] == DURATION_PATTERN, path


def test_every_pattern_a_user_can_break_has_a_message() -> None:
    for path, node in walk(document_schema()):
        pattern = node.get("pattern")
        if pattern is not None and pattern != DURATION_PATTERN:
            assert pattern in PATTERN_HINTS, f"{path}: add a message for {pattern}"


def test_unknown_fields_are_refused_in_every_object() -> None:
    objects = [(p, n) for p, n in walk(document_schema()) if n.get("type") == "object"]
    assert len(objects) > 20
    for path, node in objects:
        if path == ".spec.hosts":
            assert isinstance(node["additionalProperties"], dict)
        else:
            assert node.get("additionalProperties") is False, path


def strip_map_defaults(node: dict[str, Any]) -> dict[str, Any]:
    """The spec's schema as an override sees it: no defaults and nothing required, except
    inside list items (an override's list replaces the spec's, so its items are whole)."""
    node = {k: v for k, v in node.items() if k not in ("default", "description")}
    node.pop("required", None)
    if "properties" in node:
        node["properties"] = {k: strip_map_defaults(v) for k, v in node["properties"].items()}
    return node


def drop_descriptions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: drop_descriptions(v) for k, v in node.items() if k != "description"}
    return [drop_descriptions(v) for v in node] if isinstance(node, list) else node


def test_a_host_override_takes_the_spec_fields_without_defaults_or_nested_hosts() -> None:
    spec = openapi_schema()["properties"]["spec"]
    override = spec["properties"]["hosts"]["additionalProperties"]
    expected = copy.deepcopy(spec)
    del expected["properties"]["hosts"]
    expected = strip_map_defaults(expected)
    for name in ("healthChecks", "gates"):  # whole entries, defaults and all
        expected["properties"][name]["items"] = spec["properties"][name]["items"]
    for name in ("configuration",):  # exactly-one-of maps keep what makes them one of
        expected["properties"][name] = spec["properties"][name]
    expected["properties"]["reboot"]["properties"]["window"] = (
        spec["properties"]["reboot"]["properties"]["window"])
    expected["properties"]["hooks"]["properties"]["postDeploy"] = (
        spec["properties"]["hooks"]["properties"]["postDeploy"])
    assert drop_descriptions(override) == drop_descriptions(expected)


# --- the model and the schema, field for field ------------------------------------------


def optional_inner(hint: Any) -> Any | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return args[0]
    return None


def agree(hint: Any, node: dict[str, Any], where: str) -> None:
    """`hint` (a model type) and `node` (a schema node) describe the same values."""
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        agree_class(typing.cast(type, hint), node, where)
    elif hint is str:
        assert node["type"] == "string", where
    elif hint is bool:
        assert node["type"] == "boolean", where
    elif hint is int:
        assert node["type"] == "integer", where
    elif hint is float:
        assert node["type"] == "number" or node.get("pattern") == DURATION_PATTERN, where
    elif origin is typing.Literal:
        assert node["type"] == "string", where
        assert list(typing.get_args(hint)) == node["enum"], where
    elif origin is tuple and typing.get_args(hint)[0] is model.HostOverride:
        assert node["type"] == "object", where
        assert "additionalProperties" in node, where
    elif origin is tuple:
        assert node["type"] == "array", where
        agree(typing.get_args(hint)[0], node["items"], where + "[]")
    else:
        raise AssertionError(f"{where}: no rule for {hint}")


def agree_class(cls: type, node: dict[str, Any], where: str) -> None:
    assert node["type"] == "object", where
    hints = typing.get_type_hints(cls)
    fields = {camel(f.name): f for f in dataclasses.fields(cls) if f.compare}
    properties = node.get("properties", {})
    assert set(fields) == set(properties), (
        f"{where}: model {sorted(fields)} != schema {sorted(properties)}")
    required = set(node.get("required", []))
    for name, field in fields.items():
        at = f"{where}.{name}"
        sub = properties[name]
        has_default = (field.default is not dataclasses.MISSING
                       or field.default_factory is not dataclasses.MISSING)
        if at in (".apiVersion", ".kind"):  # required in a file, a constant in the model
            assert sub["type"] == "string"
            assert field.default in (model.API_VERSION, model.KIND)
            continue
        assert (name in required) == (not has_default), f"{at}: required iff no default"
        default = (field.default if field.default is not dataclasses.MISSING
                   else field.default_factory() if field.default_factory is not dataclasses.MISSING
                   else None)
        inner = optional_inner(hints[field.name])
        if inner is not None:
            assert default is None, f"{at}: optional, so no default"
            assert "default" not in sub, f"{at}: optional, so no default"
            agree(inner, sub, at)
            continue
        agree(hints[field.name], sub, at)
        if name in required:
            continue
        assert "default" in sub, f"{at}: the model has a default, the schema has none"
        from_schema = value_from_data(hints[field.name], apply_defaults(sub["default"], sub),
                                      sub)
        assert from_schema == default, f"{at}: schema default {sub['default']!r}"
        written = value_to_data(default, sub)  # and back: "120s" may come out as "2m"
        assert value_from_data(hints[field.name], written, sub) == default, at


def test_the_model_and_the_schema_agree_field_for_field() -> None:
    agree_class(model.NixOSDeployment, document_schema(), "")


def test_the_agreement_check_notices_a_difference() -> None:
    @dataclasses.dataclass(frozen=True)
    class Strategy:
        action: model.Action = "switch"
        trail: bool = True

    node = openapi_schema()["properties"]["spec"]["properties"]["strategy"]
    with pytest.raises(AssertionError, match="trail"):
        agree_class(Strategy, node, ".spec.strategy")

    @dataclasses.dataclass(frozen=True)
    class Rollback:
        automatic: bool = True
        confirm_timeout: float = 60.0
        retry_failed_revision: bool = False

    node = openapi_schema()["properties"]["spec"]["properties"]["rollback"]
    with pytest.raises(AssertionError, match="confirmTimeout"):
        agree_class(Rollback, node, ".spec.rollback")


# --- what `pullnix schema` prints -------------------------------------------------------


def test_the_printed_schema_is_draft7_json_schema_for_editors() -> None:
    printed = schema_json()
    assert printed["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert printed["title"] == "pullnix.yaml (NixOSDeployment pullnix.dev/v1alpha1)"
    jsonschema.Draft7Validator.check_schema(printed)
    assert "x-kubernetes" not in json.dumps(printed)
    assert "status" not in printed["properties"]
    assert printed["properties"]["apiVersion"]["const"] == "pullnix.dev/v1alpha1"
    spec = printed["properties"]["spec"]["properties"]
    assert spec["interval"]["pattern"] == DURATION_PATTERN
    assert all("description" in sub for sub in spec.values())


def test_a_plain_validator_with_the_printed_schema_accepts_the_example_and_refuses_a_typo() -> None:
    validator = jsonschema.Draft7Validator(schema_json())
    example = yaml.safe_load((ROOT / "examples" / "fleet" / "pullnix.yaml").read_text())
    assert list(validator.iter_errors(example)) == []
    example["spec"]["healthChecks"][0]["retires"] = 3
    (error,) = validator.iter_errors(example)
    assert "retires" in error.message


# --- the status: what the agent writes and the schema, field for field --------------------


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
        f"{where}: writer {sorted(fields)} != schema {sorted(properties)}")
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
    """The keys of the status dict the controller writes, and of its `source`, read from
    reconciler/controller/reconcile.py (its writer needs a whole machine to run)."""
    def keys(node: ast.Dict) -> list[str]:
        return [str(k.value) if isinstance(k, ast.Constant) else "**" for k in node.keys]

    tree = ast.parse((ROOT / "reconciler" / "controller" / "reconcile.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and {"lastAppliedRevision", "history"} <= set(keys(node)):
            value = node.values[keys(node).index("source")]
            source = next(n for n in ast.walk(value) if isinstance(n, ast.Dict))
            return set(keys(node)), set(keys(source))
    raise AssertionError("reconcile.py writes no status dict with lastAppliedRevision")


def test_the_status_the_controller_writes_has_exactly_the_schemas_fields() -> None:
    keys, source = status_keys_written()
    status = openapi_schema()["properties"]["status"]
    assert keys == set(status["properties"]) == set(status["required"])
    assert source == set(status["properties"]["source"]["properties"])


def operation(state: str, kind: str = "apply", **fields: Any) -> dict[str, Any]:
    """A finished helper operation as the helper's status answers it (its journal form)."""
    request = ApplyRequest(store_path="/nix/store/" + "a" * 32 + "-nixos-system",
                           revision=fields.pop("revision", "c" * 40),
                           traceparent=fields.pop("traceparent", ""))
    return journal.to_json(Operation(
        id="op-1", kind=kind, request=request, previous=Previous(None, None, None),
        state=State(state), created_at=iso(1.8e9), finished_at=iso(1.8e9 + 5), **fields))


def check(ok: bool) -> CheckResult:
    return CheckResult("api", "http", ok, "200 OK" if ok else "refused", 1 if ok else 4,
                       iso(1.8e9 + 1), iso(1.8e9 + 2))


TRACEPARENT = f"00-{'ab' * 16}-{'cd' * 8}-01"
ENTRIES = {
    "deployed": entry_from_operation(operation(
        "Succeeded", traceparent=TRACEPARENT, generation=7, checks=(check(True),)),
        "1 package changed"),
    "rolled back": entry_from_operation(operation(
        "RolledBack", traceparent=TRACEPARENT, checks=(check(True), check(False)),
        message="health check api failed"), ""),
    "failed, no trace": entry_from_operation(operation("Failed", message="activation"), None),
    "rollback asked for": entry_from_operation(operation(
        "Succeeded", kind="rollback", revision="", traceparent=TRACEPARENT, generation=6)),
}


def status_document(history: list[HistoryEntry]) -> dict[str, Any]:
    conditions = [Condition("Ready", "True", "Succeeded", "applied", "2026-01-01T00:00:00Z", 3),
                  Condition("Healthy", "Unknown", "Progressing", "", "2026-01-01T00:00:00Z")]
    return {"observedGeneration": 3, "conditions": [c.to_json() for c in conditions],
            "lastAppliedRevision": "c" * 40, "lastAttemptedRevision": "c" * 40,
            "currentGeneration": 7, "currentSystem": "/nix/store/x",
            "source": {"url": "file:///srv/fleet.git", "branch": "main", "revision": "c" * 40,
                       "skipped": ["https://down.example: connection refused"]},
            "suspended": False, "lastPassAt": "2026-01-01T00:00:05Z",
            "history": [h.to_json() for h in history]}


@pytest.mark.parametrize("name", ENTRIES)
def test_a_history_entry_from_each_kind_of_helper_outcome_fits_the_schema(name: str) -> None:
    doc = status_document([ENTRIES[name]])
    assert list(status_validator().iter_errors(doc)) == []


def test_a_status_before_anything_happened_fits_the_schema() -> None:
    doc = {**status_document([]), "lastAppliedRevision": None, "lastAttemptedRevision": None,
           "currentGeneration": None, "currentSystem": None, "source": None}
    assert list(status_validator().iter_errors(doc)) == []


def set_at(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = doc
    for part in parents:
        node = node[part]
    node[last] = value
    return doc


@pytest.mark.parametrize(("path", "value", "message"), [
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
])
def test_the_status_schema_refuses_what_the_agent_never_writes(path: str, value: Any,
                                                               message: str) -> None:
    doc = set_at(status_document([ENTRIES["deployed"]]), path, value)
    (error,) = status_validator().iter_errors(doc)
    assert message in error.message
