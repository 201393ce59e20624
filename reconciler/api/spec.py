"""Loading `pullnix.yaml`: bytes to a checked, defaulted, frozen NixOSDeployment, and
selecting one host's spec.

Owns the order of the checks (safe YAML, then apiVersion and kind, then the
schema, then what a schema cannot say: regular expressions compile, a reboot
window is not empty, every host override leaves a valid spec) and the merge
rule for `spec.hosts`:

    For host H, every glob that matches H (fnmatch, case-sensitive) applies,
    in file order, on top of the spec. Maps merge deeply (a key the override
    names replaces that key; the others stay), lists and scalars replace whole.
    The merged spec must itself be valid; it has no `hosts`.

Every problem becomes an Issue with file, line, column and field path; all of
them are collected and raised together as one SpecError.

Must not: fetch from git or touch the machine; the source layer hands in bytes.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from reconciler.api.convert import deployment_from_data, spec_from_data, spec_to_data, thaw
from reconciler.api.document import MAX_BYTES, Document, DocumentError, Position, read_document
from reconciler.api.issues import Issue, SpecError, format_path
from reconciler.api.schema import (
    api_version,
    apply_defaults,
    document_node,
    document_validator,
    kind,
    spec_node,
    spec_validator,
)
from reconciler.api.violations import describe, schema_issues
from reconciler.core.model import DeploymentSpec, FieldPath, HostOverride, NixOSDeployment


def load_spec_file(path: str | os.PathLike[str]) -> NixOSDeployment:
    """Read and check a desired-state file; raise SpecError (reason InvalidSpec) on any fault."""
    origin = os.fspath(path)
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            text = handle.read(MAX_BYTES + 1) if size <= MAX_BYTES else b""
    except OSError as exc:
        message = f"cannot read the file: {exc.strerror}"
        raise SpecError([Issue(origin, 1, 1, "", message)]) from None
    if size > MAX_BYTES:
        raise SpecError(
            [
                Issue(
                    origin,
                    1,
                    1,
                    "",
                    f"the file is {size / MAX_BYTES:.1f} MiB; "
                    "a desired-state file may be at most 1 MiB",
                )
            ]
        )
    return load_spec_text(text, origin)


def load_spec_text(text: bytes, origin: str) -> NixOSDeployment:
    """Check `text` (the bytes of `origin`, a path or `commit:path`) and build the deployment."""
    try:
        doc = read_document(text, origin)
    except DocumentError as exc:
        raise SpecError(exc.issues) from None
    if issues := _identity_issues(doc):
        raise SpecError(issues)
    if issues := schema_issues(doc, document_validator(), doc.data):
        raise SpecError(issues)
    data = apply_defaults(doc.data, document_node())
    if issues := _meaning_issues(doc, data["spec"], ("spec",)):
        raise SpecError(issues)
    positions = {path: (pos.line, pos.col) for path, pos in doc.positions.items()}
    for glob in data["spec"]["hosts"]:  # an override is found at its glob
        pos = doc.positions[("spec", "hosts", glob)]
        positions[("spec", "hosts", glob)] = (pos.key_line, pos.key_col)
    deployment = deployment_from_data(data, origin, positions)
    issues = []
    for override in deployment.spec.hosts:
        suffix = f" (in the spec merged for hosts matching {override.glob!r})"
        issues += _merge_issues(deployment.spec, [override], suffix)
    if issues:
        raise SpecError(issues)
    return deployment


@overload
def for_host(obj: NixOSDeployment, host: str) -> NixOSDeployment: ...
@overload
def for_host(obj: DeploymentSpec, host: str) -> DeploymentSpec: ...
def for_host(
    obj: NixOSDeployment | DeploymentSpec,
    host: str,
) -> NixOSDeployment | DeploymentSpec:
    """The deployment (or spec) as host `host` sees it: matching overrides merged in, no
    `hosts` left.

    Raise SpecError when the merged spec is not valid (e.g. one override sets
    `configuration.flake` on a spec that uses `classic`).
    """
    if isinstance(obj, DeploymentSpec):
        return _spec_for_host(obj, host)
    return dataclasses.replace(obj, spec=_spec_for_host(obj.spec, host))


def _spec_for_host(spec: DeploymentSpec, host: str) -> DeploymentSpec:
    matching = [o for o in spec.hosts if fnmatch.fnmatchcase(host, o.glob)]
    globs = ", ".join(repr(o.glob) for o in matching)
    suffix = f" (in the spec merged for host {host!r} from hosts {globs})"
    if issues := _merge_issues(spec, matching, suffix):
        raise SpecError(issues)
    return spec_from_data(_merged_data(spec, matching))


def merge(base: Any, override: Any) -> Any:
    """The merge rule: maps merge deeply, everything else (lists, scalars) replaces."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for key, value in override.items():
            out[key] = merge(base[key], value) if key in base else value
        return out
    return override


def _merged_data(spec: DeploymentSpec, overrides: Sequence[HostOverride]) -> dict[str, Any]:
    data = spec_to_data(spec)
    data.pop("hosts", None)
    for override in overrides:
        data = merge(data, thaw(override.patch))
    merged: dict[str, Any] = apply_defaults(data, spec_node())
    merged.pop("hosts", None)
    return merged


@dataclass(frozen=True)
class _MergedDocument(Document):
    """A merged spec whose issues point into the override that set the field, if one did."""

    owners: Mapping[FieldPath, str] = field(default_factory=dict)

    def issue(self, path: FieldPath, message: str, *, at_key: bool = False) -> Issue:
        issue = super().issue(path, message, at_key=at_key)
        glob = self.owners.get(path)
        if glob is None:
            return issue
        shown = format_path(("spec", "hosts", glob, *path[1:]))
        return Issue(issue.file, issue.line, issue.col, shown, issue.message)


def _merge_issues(
    spec: DeploymentSpec, overrides: Sequence[HostOverride], suffix: str
) -> list[Issue]:
    if not overrides:
        return []
    last = overrides[-1]
    line, col = last.positions.get((), (1, 1))
    positions: dict[FieldPath, Position] = {("spec",): Position(line, col, line, col)}
    owners: dict[FieldPath, str] = {}
    for override in overrides:
        for path, (line, col) in override.positions.items():
            if path:
                positions[("spec", *path)] = Position(line, col, line, col)
                owners[("spec", *path)] = override.glob
    merged = _merged_data(spec, overrides)
    doc = _MergedDocument(last.origin, {"spec": merged}, positions, owners)
    issues = schema_issues(doc, spec_validator(), merged, ("spec",), suffix)
    return issues or _meaning_issues(doc, merged, ("spec",), suffix)


def _identity_issues(doc: Document) -> list[Issue]:
    data = doc.data
    if not isinstance(data, dict):
        return [
            doc.issue(
                (),
                "the document must be a mapping with apiVersion, kind, metadata "
                f"and spec, not {describe(data)}",
            )
        ]
    issues = []
    for key, what, expected in (
        ("apiVersion", "an apiVersion", api_version()),
        ("kind", "a kind", kind()),
    ):
        if key in data and data[key] != expected:
            shown = json.dumps(data[key]) if isinstance(data[key], str) else describe(data[key])
            issues.append(
                doc.issue((key,), f"{shown} is not {what} pullnix reads; write {key}: {expected}")
            )
    return issues


def _meaning_issues(
    doc: Document, spec: Mapping[str, Any], at: FieldPath, suffix: str = ""
) -> list[Issue]:
    """What the schema cannot say, for a spec and for each of its host overrides."""
    issues = []
    for i, check in enumerate(spec.get("healthChecks", [])):
        regex = check.get("http", {}).get("bodyRegex")
        if regex is not None:
            where = (*at, "healthChecks", i, "http", "bodyRegex")
            try:
                re.compile(regex)
            except re.error as exc:
                issues.append(doc.issue(where, f"not a valid regular expression: {exc}" + suffix))
            except (RecursionError, OverflowError):  # `((((…` a thousand deep, `a{99999999999}`
                why = "not a regular expression Python compiles: nested too deeply or repeating "
                why += "too often"
                issues.append(doc.issue(where, why + suffix))
    window = spec.get("reboot", {}).get("window")
    if window is not None and window["start"] == window["end"]:
        issues.append(
            doc.issue(
                (*at, "reboot", "window", "end"),
                "the window is empty: end is the same as start" + suffix,
            )
        )
    for glob, patch in spec.get("hosts", {}).items():
        issues += _meaning_issues(doc, patch, (*at, "hosts", glob), suffix)
    return issues
