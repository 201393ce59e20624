"""Walking the CRD's schema beside the model's dataclasses: the shared half of the schema tests.

Owns `walk` (every schema node with a readable path) and `agree` /
`agree_class` (a model type and a schema node describe the same values: names
in camelCase, types, required where there is no default, the same defaults).
Used by tests/unit/test_spec_schema.py (the spec) and test_status_schema.py
(the status).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

from reconciler.api.convert import camel, value_from_data, value_to_data
from reconciler.api.schema import apply_defaults
from reconciler.common.durations import DURATION_PATTERN
from reconciler.core import model


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
        f"{where}: model {sorted(fields)} != schema {sorted(properties)}"
    )
    required = set(node.get("required", []))
    for name, field in fields.items():
        at = f"{where}.{name}"
        sub = properties[name]
        has_default = (
            field.default is not dataclasses.MISSING
            or field.default_factory is not dataclasses.MISSING
        )
        if at in (".apiVersion", ".kind"):  # required in a file, a constant in the model
            assert sub["type"] == "string"
            assert field.default in (model.API_VERSION, model.KIND)
            continue
        assert (name in required) == (not has_default), f"{at}: required iff no default"
        default = (
            field.default
            if field.default is not dataclasses.MISSING
            else field.default_factory()
            if field.default_factory is not dataclasses.MISSING
            else None
        )
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
        from_schema = value_from_data(hints[field.name], apply_defaults(sub["default"], sub), sub)
        assert from_schema == default, f"{at}: schema default {sub['default']!r}"
        written = value_to_data(default, sub)  # and back: "120s" may come out as "2m"
        assert value_from_data(hints[field.name], written, sub) == default, at
