"""Between checked documents and the model's frozen dataclasses, both ways.

Owns the one mapping of schema fields to dataclass fields: camelCase keys
become snake_case fields, a string whose schema pattern is the duration
grammar becomes float seconds (and back, as the shortest duration text),
lists become tuples, an absent optional field is None. Driven by the
dataclasses' type hints and the schema together, so a field added to one and
not the other fails loudly (and the agreement test names it).

Must not: validate. Its input has already passed the schema; a mismatch here
is a bug in pullnix, not in the user's file.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from reconciler.api.schema import spec_node
from reconciler.common.durations import DURATION_PATTERN, format_duration, parse_duration
from reconciler.core.model import (
    DeploymentSpec,
    FieldPath,
    HostOverride,
    Metadata,
    NixOSDeployment,
)


def camel(name: str) -> str:
    """Field name in the schema: git_remote -> gitRemote."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def deployment_from_data(
    data: Mapping[str, Any],
    origin: str = "",
    positions: Mapping[FieldPath, tuple[int, int]] | None = None,
) -> NixOSDeployment:
    """A NixOSDeployment from a checked, defaulted document."""
    return NixOSDeployment(
        api_version=data["apiVersion"],
        kind=data["kind"],
        metadata=Metadata(name=data["metadata"]["name"]),
        spec=spec_from_data(data["spec"], origin, positions or {}),
    )


def spec_from_data(
    data: Mapping[str, Any],
    origin: str = "",
    positions: Mapping[FieldPath, tuple[int, int]] | None = None,
) -> DeploymentSpec:
    """A DeploymentSpec from a checked, defaulted spec; `positions` are the document's."""
    spec: DeploymentSpec = _build(DeploymentSpec, data, spec_node(), origin, positions or {})
    return spec


def spec_to_data(spec: DeploymentSpec) -> dict[str, Any]:
    """The spec as the document would spell it (camelCase, durations as text)."""
    out: dict[str, Any] = _unbuild(spec, spec_node())
    return out


def deployment_to_data(deployment: NixOSDeployment) -> dict[str, Any]:
    return {
        "apiVersion": deployment.api_version,
        "kind": deployment.kind,
        "metadata": {"name": deployment.metadata.name},
        "spec": spec_to_data(deployment.spec),
    }


def freeze(value: Any) -> Any:
    """A read-only deep copy: mappings become mapping proxies, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The plain dicts and lists again, from `freeze`'s output."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thaw(v) for v in value]
    return value


def value_from_data(hint: Any, raw: Any, schema: Mapping[str, Any]) -> Any:
    """One checked value as the model types it (`hint`), e.g. "2m" for a float -> 120.0."""
    return _value(hint, raw, schema, "", {})


def value_to_data(value: Any, schema: Mapping[str, Any]) -> Any:
    """One model value as the document spells it, e.g. 120.0 for a duration -> "2m"."""
    return _unbuild(value, schema)


def _hosts(
    data: Mapping[str, Any], origin: str, positions: Mapping[FieldPath, tuple[int, int]]
) -> tuple[HostOverride, ...]:
    out = []
    for glob, patch in data.items():
        base = ("spec", "hosts", glob)
        own = {
            path[len(base) :]: pos for path, pos in positions.items() if path[: len(base)] == base
        }
        out.append(
            HostOverride(
                glob=glob, patch=freeze(patch), origin=origin, positions=MappingProxyType(own)
            )
        )
    return tuple(out)


def _build(
    cls: type,
    data: Mapping[str, Any],
    schema: Mapping[str, Any],
    origin: str,
    positions: Mapping[FieldPath, tuple[int, int]],
) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        key = camel(field.name)
        if key not in data:
            continue
        if cls is DeploymentSpec and field.name == "hosts":
            kwargs["hosts"] = _hosts(data[key], origin, positions)
            continue
        kwargs[field.name] = _value(
            hints[field.name], data[key], schema["properties"][key], origin, positions
        )
    unknown = set(data) - {camel(f.name) for f in dataclasses.fields(cls)}
    assert not unknown, f"{cls.__name__} has no field for {sorted(unknown)}"
    return cls(**kwargs)


def _value(
    hint: Any,
    raw: Any,
    schema: Mapping[str, Any],
    origin: str,
    positions: Mapping[FieldPath, tuple[int, int]],
) -> Any:
    origin_type = typing.get_origin(hint)
    if origin_type in (typing.Union, types.UnionType):
        (inner,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        return _value(inner, raw, schema, origin, positions)
    if origin_type is tuple:
        item_hint = typing.get_args(hint)[0]
        return tuple(_value(item_hint, item, schema["items"], origin, positions) for item in raw)
    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), raw, schema, origin, positions)
    if hint is float:
        return parse_duration(raw) if schema.get("pattern") == DURATION_PATTERN else float(raw)
    if hint is int:
        return int(raw)
    return raw  # str, bool and Literal values are already what they should be


def _unbuild(value: Any, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, tuple) and schema.get("type") == "object":  # hosts
        return {o.glob: thaw(o.patch) for o in value if isinstance(o, HostOverride)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {}
        for field in dataclasses.fields(value):
            key = camel(field.name)
            item = getattr(value, field.name)
            if item is not None and key in schema.get("properties", {}):
                out[key] = _unbuild(item, schema["properties"][key])
        return out
    if isinstance(value, tuple):
        return [_unbuild(item, schema["items"]) for item in value]
    if isinstance(value, float) and schema.get("pattern") == DURATION_PATTERN:
        return format_duration(value)
    return value
