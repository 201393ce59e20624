"""The CRD in crds/ is a real CRD, the one schema of pullnix.yaml, and agrees with the model.

The dataclasses of reconciler/core/model.py and the CRD's openAPIV3Schema are
walked together (tests/support/schemawalk.py), field for field and nested: the
same names (snake_case and camelCase), the same types, required where there is
no default, and the same defaults. The status part of the CRD is
test_status_schema.py's.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from reconciler.api import schema_json
from reconciler.api.schema import (
    api_version,
    crd,
    document_schema,
    kind,
    openapi_schema,
)
from reconciler.api.violations import PATTERN_HINTS
from reconciler.common.durations import DURATION_PATTERN
from reconciler.core import model
from tests.support.schemawalk import agree_class, walk

ROOT = Path(__file__).parent.parent.parent
CRD_FILE = ROOT / "crds" / "nixosdeployment.yaml"
PACKAGED = ROOT / "reconciler" / "api" / "nixosdeployment.yaml"


def test_the_crd_is_a_crd_for_nixosdeployments_in_pullnix_dev() -> None:
    doc = crd()
    assert (doc["apiVersion"], doc["kind"]) == (
        "apiextensions.k8s.io/v1",
        "CustomResourceDefinition",
    )
    spec = doc["spec"]
    assert doc["metadata"]["name"] == f"{spec['names']['plural']}.{spec['group']}"
    assert (spec["group"], spec["names"]["kind"], spec["names"]["plural"]) == (
        "pullnix.dev",
        "NixOSDeployment",
        "nixosdeployments",
    )
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
            f"{path}: the API server refuses additionalProperties: false (it prunes instead)"
        )
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
    durations = [
        path
        for path, node in walk(openapi_schema())
        if node.get("type") == "string" and "ms|s|m|h" in node.get("pattern", "")
    ]
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


def test_a_host_override_takes_the_spec_fields_without_defaults_nested_hosts_or_rollout() -> None:
    spec = openapi_schema()["properties"]["spec"]
    override = spec["properties"]["hosts"]["additionalProperties"]
    expected = copy.deepcopy(spec)
    del expected["properties"]["hosts"]
    del expected["properties"]["rollout"]  # one rollout for the whole fleet: never per host
    expected = strip_map_defaults(expected)
    for name in ("healthChecks", "gates"):  # whole entries, defaults and all
        expected["properties"][name]["items"] = spec["properties"][name]["items"]
    for name in ("configuration",):  # exactly-one-of maps keep what makes them one of
        expected["properties"][name] = spec["properties"][name]
    expected["properties"]["reboot"]["properties"]["window"] = spec["properties"]["reboot"][
        "properties"
    ]["window"]
    expected["properties"]["hooks"]["properties"]["postDeploy"] = spec["properties"]["hooks"][
        "properties"
    ]["postDeploy"]
    assert drop_descriptions(override) == drop_descriptions(expected)


# --- the model and the schema, field for field ------------------------------------------


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
