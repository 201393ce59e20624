"""Schema violations, phrased for the person who has to fix the file.

Owns the translation of jsonschema's errors into issues that say what is
wrong, where (line, column, field path) and what to do: an unknown field names
the closest known one, a duration explains its grammar, an unquoted 12:30 is
explained as the number YAML made of it, a check with two kinds says which
one was already set.

Must not: parse YAML or read files.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

import jsonschema

from reconciler.api.document import Document
from reconciler.api.issues import Issue, format_path
from reconciler.api.schema import LIST_MAP_KEYS, VALIDATIONS
from reconciler.common.durations import DURATION_PATTERN
from reconciler.core.model import FieldPath

TIME_PATTERN = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
REVISION_PATTERN = (
    r"^(([A-Za-z0-9_+-]+|[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*\.([A-Za-z0-9_+-]{1,3}|[A-"
    r"Za-z0-9_+-]{5,}|[A-Za-km-z0-9_+-][A-Za-z0-9_+-]{3}|l[A-Za-np-z0-9_+-][A-Za-z0-9_"
    r"+-]{2}|lo[A-Zabd-z0-9_+-][A-Za-z0-9_+-]|loc[A-Za-jl-z0-9_+-]))(/([A-Za-z0-9_+-]+"
    r"|[A-Za-z0-9_+-]+(\.[A-Za-z0-9_+-]+)*\.([A-Za-z0-9_+-]{1,3}|[A-Za-z0-9_+-]{5,}|[A"
    r"-Za-km-z0-9_+-][A-Za-z0-9_+-]{3}|l[A-Za-np-z0-9_+-][A-Za-z0-9_+-]{2}|lo[A-Zabd-z"
    r"0-9_+-][A-Za-z0-9_+-]|loc[A-Za-jl-z0-9_+-])))*)?$"
)

#: What each pattern in the CRD means, for messages; a test checks every pattern has one.
PATTERN_HINTS: Mapping[str, str] = {
    TIME_PATTERN: 'is not a time of day; write HH:MM in 24-hour time, quoted, such as "02:00"',
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$": (
        "is not a valid name; use lower-case letters, digits and '-', such as \"api\""
    ),
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$": (
        "is not a valid name; use lower-case letters, digits, '-' and '.', such as \"fleet\""
    ),
    r"^(100|[1-9]?[0-9])%$": 'is not a percentage from 0% to 100%, such as "90%"',
    REVISION_PATTERN: "is not a commit SHA or a tag name git accepts (git check-ref-format: "
    "no component starting with '.', no '..' or '//', not ending in '/', '.' or '.lock'); "
    'pin a commit such as "3f2a1c9e" or a tag such as "v1.2.0", or leave it empty',
    r"^[^#\s]+$": "is not a flake attribute path; write one such as "
    "\"nixosConfigurations.{host}\", without '#' or spaces",
    # Segments that are not "..", so the path stays inside the repository (RE2: no lookahead).
    r"^([^./\s][^/\s]*|\.([^./\s][^/\s]*)?|\.\.[^/\s]+)"
    r"(/([^./\s][^/\s]*|\.([^./\s][^/\s]*)?|\.\.[^/\s]+))*$": "is not a path inside the "
    "repository (no leading '/', no '..', no spaces), such as "
    '"hosts/{host}/configuration.nix"',
    r"^https?://[^\s]+$": "is not an http:// or https:// URL",
    r"^[^/\s]+$": 'is not a systemd unit name, such as "sshd.service"',
}

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def describe(value: Any) -> str:
    """How a parsed YAML value reads in a message: 'an integer (42)', 'a list'."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({json.dumps(value)})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"a string ({json.dumps(value)})"
    return "a list" if isinstance(value, list) else "a mapping"


def schema_issues(
    doc: Document, validator: Any, instance: Any, prefix: FieldPath = (), suffix: str = ""
) -> list[Issue]:
    """Every violation of `validator`'s schema by `instance` (found at `prefix` in `doc`)."""
    issues: list[Issue] = []
    errors = list(validator.iter_errors(instance))
    typed = {tuple(e.absolute_path) for e in errors if e.validator == "type"}
    unknown_in = {tuple(e.absolute_path) for e in errors if e.validator == "additionalProperties"}
    for error in errors:
        path = (*prefix, *error.absolute_path)
        if error.validator != "type" and tuple(error.absolute_path) in typed:
            continue  # the wrong type says it all
        for at_key, where, message in _explain(doc, error, path, unknown_in, len(prefix)):
            issue = doc.issue(where, message + suffix, at_key=at_key)
            issues.append(issue)
    return _unique(issues)


def _explain(  # noqa: C901, PLR0912 - one wording per JSON Schema keyword, a table
    doc: Document,
    error: jsonschema.ValidationError,
    path: FieldPath,
    unknown_in: set[FieldPath],
    prefix_len: int,
) -> Iterable[tuple[bool, FieldPath, str]]:
    kind: Any = error.validator
    value: Any = error.validator_value
    schema: Any = error.schema
    instance: Any = error.instance
    if kind == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        for key in sorted(set(instance) - set(known), key=lambda k: doc.at((*path, k)).key_line):
            yield True, (*path, key), _unknown_field(path, key, known)
    elif kind == "required":
        for key in value:
            if key not in instance:
                parent = format_path(path) or "the top level of the file"
                yield True, (*path, key), f"required field is missing; add it under {parent}"
    elif kind == "type":
        yield False, path, _wrong_type(doc, path, value, instance, schema)
    elif kind == "oneOf":
        yield from _one_of(doc, path, value, instance, path[prefix_len:] in unknown_in)
    elif kind == "enum":
        choices = ", ".join(str(c) for c in value)
        close = difflib.get_close_matches(str(instance), [str(c) for c in value], n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        yield False, path, f"{json.dumps(instance)} is not one of {choices}{hint}"
    elif kind == "const":
        yield False, path, f"{json.dumps(instance)} is not supported here; write {value}"
    elif kind == "pattern":
        yield False, path, _bad_pattern(value, instance)
    elif kind in ("minimum", "maximum"):
        low, high = schema.get("minimum"), schema.get("maximum")
        if low is not None and high is not None:
            yield False, path, f"{instance} is out of range; use a value from {low} to {high}"
        else:
            yield False, path, f"{instance} is {'below' if kind == 'minimum' else 'above'} {value}"
    elif kind == "minItems":
        yield (
            False,
            path,
            (
                "must not be empty; list at least one item"
                if value == 1
                else f"list at least {value} items here"
            ),
        )
    elif kind == "minLength":
        yield False, path, "must not be empty"
    elif kind == "maxLength":
        yield False, path, f"is longer than {value} characters"
    elif kind in (LIST_MAP_KEYS, VALIDATIONS):
        yield False, path, error.message
    else:
        yield False, path, error.message


def _unknown_field(path: FieldPath, key: str, known: list[str]) -> str:
    if path == () and key == "status":
        return "written by the agent into its status.json, never by the repository; remove it"
    if len(path) == 3 and path[:2] == ("spec", "hosts") and key == "hosts":
        return (
            "hosts cannot be nested; an override applies to the hosts its glob matches, "
            "so put this glob under spec.hosts"
        )
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown field; did you mean {close[0]!r}?"
    if not known:
        return "unknown field; this mapping takes no fields, write {}"
    return f"unknown field; the fields here are {', '.join(known)}"


def _wrong_type(
    doc: Document, path: FieldPath, expected: Any, instance: Any, schema: Mapping[str, Any]
) -> str:
    types = expected if isinstance(expected, list) else [expected]
    wanted = " or ".join(_TYPE_NAMES[t] for t in types)
    if path == ():
        return (
            f"the document must be a mapping with apiVersion, kind, metadata and spec, "
            f"not {describe(instance)}"
        )
    if schema.get("pattern") == DURATION_PATTERN:
        wanted = 'a duration such as "30s"'
        if isinstance(instance, int | float) and not isinstance(instance, bool):
            return f'expected {wanted}, got {describe(instance)}; add a unit: "{instance}s"'
    message = f"expected {wanted}, got {describe(instance)}"
    plain = doc.at(path).plain
    if "string" in types and plain is not None and not isinstance(instance, str):
        message += f'; YAML reads the unquoted {plain} that way, so quote it: "{plain}"'
    elif instance is None:
        message += "; fill it in or remove the key"
    return message


def _one_of(
    doc: Document,
    path: FieldPath,
    branches: list[Mapping[str, Any]],
    instance: Any,
    has_unknown: bool,
) -> Iterable[tuple[bool, FieldPath, str]]:
    if not isinstance(instance, dict):
        return
    kinds = [b["required"][0] for b in branches]
    listed = ", ".join(kinds)
    present = sorted((k for k in kinds if k in instance), key=lambda k: _order(doc, (*path, k)))
    if not present:
        if not has_unknown:  # a misspelt kind is already reported as an unknown field
            yield True, path, f"set exactly one of {listed}"
        return
    split = "; give each its own entry in the list" if path and isinstance(path[-1], int) else ""
    for extra in present[1:]:
        yield (
            True,
            (*path, extra),
            (f"{present[0]} is already set, and only one of {listed} may be{split}"),
        )


def _order(doc: Document, path: FieldPath) -> tuple[bool, int, int]:
    """Where a field was written; one with no place of its own (from a merged base) is first."""
    pos = doc.at(path)
    return path in doc.positions, pos.key_line, pos.key_col


def _bad_pattern(pattern: str, instance: str) -> str:
    if pattern == DURATION_PATTERN:
        return (
            f"{json.dumps(instance)} is not a duration; write a number with a unit, such as "
            "30s, 5m, 1h or 1h30m (units: ms, s, m, h)"
        )
    hint = PATTERN_HINTS.get(pattern, f"does not match the pattern {pattern}")
    return f"{json.dumps(instance)} {hint}"


def _unique(issues: list[Issue]) -> list[Issue]:
    seen: set[Issue] = set()
    out = []
    for issue in issues:
        if issue not in seen:
            seen.add(issue)
            out.append(issue)
    return out
