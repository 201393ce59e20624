"""The schema of `pullnix.yaml`, read from the CRD in `crds/` and turned into JSON Schema.

Owns the reading of `crds/nixosdeployment.yaml` (shipped in this package as
`nixosdeployment.yaml`, a symlink that wheels resolve into the real file) and
the conversion of its `openAPIV3Schema` into a JSON Schema (draft 7) that
jsonschema and editors (yaml-language-server) understand:

- an object with `properties` and no `additionalProperties` refuses unknown
  fields (the API server would prune them; pullnix refuses them);
- `nullable: true` adds "null" to the type;
- `x-kubernetes-list-map-keys` stays, checked by a keyword of our validator
  (entries of such a list have unique keys); other `x-kubernetes-*` go;
- what the API server checks by itself is spelled out: apiVersion and kind
  are constants, metadata.name is required.

Also applies the schema's defaults, as the API server does: an absent field
with a `default` gets it, then its own fields get theirs.

Must not: read the user's file or phrase messages for people (`violations.py`).
"""

from __future__ import annotations

import copy
import functools
import math
import re
import typing
from collections.abc import Iterator, Mapping
from datetime import datetime
from importlib import resources
from typing import Any

import jsonschema
import yaml

from reconciler.common.durations import in_range, parse_duration

CRD_RESOURCE = "nixosdeployment.yaml"
LIST_MAP_KEYS = "x-kubernetes-list-map-keys"
#: Kubernetes' CEL rules; pullnix evaluates the one form its CRD uses, a duration's range:
#: `duration(self) >= duration('1s') && duration(self) <= duration('24h')`.
VALIDATIONS = "x-kubernetes-validations"
_DURATION_RULE = re.compile(
    r"duration\(self\) >= duration\('(?P<low>[^']+)'\) && "
    r"duration\(self\) <= duration\('(?P<high>[^']+)'\)"
)
_DROPPED = ("nullable", "x-kubernetes-list-type", "x-kubernetes-preserve-unknown-fields")


@functools.cache
def crd() -> dict[str, Any]:
    """The CustomResourceDefinition, as parsed YAML."""
    text = resources.files(__package__).joinpath(CRD_RESOURCE).read_text(encoding="utf-8")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def served_version() -> dict[str, Any]:
    """The CRD's storage version entry (v1alpha1)."""
    return next(v for v in crd()["spec"]["versions"] if v.get("storage"))


def api_version() -> str:
    return f"{crd()['spec']['group']}/{served_version()['name']}"


def kind() -> str:
    return str(crd()["spec"]["names"]["kind"])


def openapi_schema() -> dict[str, Any]:
    """The CRD's openAPIV3Schema, untouched (a fresh copy)."""
    return copy.deepcopy(served_version()["schema"]["openAPIV3Schema"])


def to_json_schema(node: Mapping[str, Any]) -> dict[str, Any]:
    """Convert one OpenAPI v3 (Kubernetes structural) schema node to JSON Schema."""
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED:
            continue
        if key == "properties":
            out[key] = {name: to_json_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, Mapping):
            out[key] = to_json_schema(value)
        elif key in ("oneOf", "anyOf", "allOf"):
            out[key] = [to_json_schema(sub) for sub in value]
        else:
            out[key] = copy.deepcopy(value)
    if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]  # after the object check: a nullable object too
    return out


@functools.cache
def _document_schema() -> dict[str, Any]:
    schema = to_json_schema(openapi_schema())
    del schema["properties"]["status"]  # written by the agent, never by the repository
    # What the API server checks by itself, and a file on disk must say too.
    schema["properties"]["apiVersion"]["const"] = api_version()
    schema["properties"]["kind"]["const"] = kind()
    metadata = schema["properties"]["metadata"]
    metadata["description"] = "The object's name (other metadata is not read)."
    metadata["required"] = ["name"]
    return schema


def document_schema() -> dict[str, Any]:
    """JSON Schema of a whole `pullnix.yaml` (no status), for validation: a copy to keep."""
    return copy.deepcopy(_document_schema())


def spec_schema() -> dict[str, Any]:
    """JSON Schema of `spec` alone (for a spec merged for one host): a copy to keep."""
    return copy.deepcopy(_document_schema()["properties"]["spec"])


def document_node() -> Mapping[str, Any]:
    """The same as `document_schema`, shared and not copied: only to read (this package's
    own walks, on every load of a spec, where copying it was most of the cost)."""
    return _document_schema()


def spec_node() -> Mapping[str, Any]:
    """The same as `spec_schema`, shared and not copied: only to read."""
    return typing.cast(Mapping[str, Any], _document_schema()["properties"]["spec"])


def status_schema() -> dict[str, Any]:
    """JSON Schema of `status`, for whoever writes or reads status.json."""
    return to_json_schema(openapi_schema()["properties"]["status"])


def schema_json() -> dict[str, Any]:
    """The JSON Schema `pullnix schema` prints: for editors and for a config repo's CI."""
    schema = _strip_extensions(document_schema())
    return {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "title": f"pullnix.yaml ({kind()} {api_version()})",
        **schema,
    }


def _strip_extensions(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _strip_extensions(v) for k, v in node.items() if not k.startswith("x-")}
    if isinstance(node, list):
        return [_strip_extensions(v) for v in node]
    return node


def _unique_list_map_keys(
    _validator: Any, keys: list[str], instance: Any, _schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    if not isinstance(instance, list):
        return
    seen: dict[tuple[Any, ...], int] = {}
    for index, item in enumerate(instance):
        if not isinstance(item, dict) or not all(k in item for k in keys):
            continue
        value = tuple(repr(item[k]) for k in keys)
        if value in seen:
            shown = ", ".join(f"{k} {item[k]!r}" for k in keys)
            yield jsonschema.ValidationError(
                f"the {shown} is already used by entry [{seen[value]}] of this list; "
                f"each entry needs its own {' and '.join(keys)}",
                path=[index, keys[0]],
            )
        else:
            seen[value] = index


def duration_range(rule: str) -> tuple[str, str]:
    """The (low, high) durations of a CEL range rule; ValueError for any other rule."""
    found = _DURATION_RULE.fullmatch(rule)
    if found is None:
        raise ValueError(f"{VALIDATIONS}: pullnix does not evaluate the rule {rule!r}")
    return found["low"], found["high"]


def _cel_rules(
    _validator: Any, rules: list[Mapping[str, str]], instance: Any, _schema: Mapping[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """A duration string (the pattern checks its grammar) lies within its field's range."""
    for rule in rules:
        low, high = duration_range(rule["rule"])
        if not isinstance(instance, str):
            continue
        try:
            seconds = parse_duration(instance, maximum=math.inf)
        except ValueError:
            continue  # not a duration at all: `pattern` or `maxLength` says so
        if not in_range(seconds, parse_duration(low), parse_duration(high)):
            yield jsonschema.ValidationError(
                f"{instance} is out of range; use a duration from {low} to {high}"
            )


Validator = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
    jsonschema.Draft7Validator,
    {LIST_MAP_KEYS: _unique_list_map_keys, VALIDATIONS: _cel_rules},
)


@functools.cache
def document_validator() -> Any:
    return Validator(_document_schema())


@functools.cache
def spec_validator() -> Any:
    return Validator(_document_schema()["properties"]["spec"])


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")


def is_date_time(value: object) -> bool:
    """RFC 3339 `format: date-time`, which the API server checks (jsonschema alone does not)."""
    if not isinstance(value, str):
        return True  # formats constrain strings only
    if _RFC3339.fullmatch(value) is None:
        return False
    try:
        datetime.fromisoformat(value.upper())
    except ValueError:  # a 13th month, a 25th hour
        return False
    return True


STATUS_FORMATS = jsonschema.FormatChecker(formats=())
STATUS_FORMATS.checks("date-time")(is_date_time)


@functools.cache
def status_validator() -> Any:
    """A validator of `status`: conditions' types unique and times RFC 3339, as the API
    server checks them."""
    return Validator(status_schema(), format_checker=STATUS_FORMATS)


def apply_defaults(value: Any, schema: Mapping[str, Any]) -> Any:
    """A copy of `value` with the schema's defaults filled in, as the API server does."""
    value = copy.deepcopy(value)
    _fill(value, schema)
    return value


def _fill(value: Any, schema: Mapping[str, Any]) -> None:
    if isinstance(value, dict):
        properties: Mapping[str, Any] = schema.get("properties", {})
        for name, sub in properties.items():
            if name not in value and "default" in sub:
                value[name] = copy.deepcopy(sub["default"])
            if name in value:
                _fill(value[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, Mapping):
            for name, item in value.items():
                if name not in properties:
                    _fill(item, extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _fill(item, schema["items"])
