"""The SystemLock file: which prebuilt system each host runs, as `pullnix publish` wrote it.

Owns the lock's shape (docs/prebuilt.md) both ways: `parse_lock`
checks a lock read from a commit field by field and names the file and the
field of anything wrong (reason InvalidSpec); `host_entry` picks this host's
store path (reason NotInLock when the lock has none); `render_lock` writes
one. A store path must look like one (`/nix/store/<32 base-32 chars>-<name>`),
so a lock can never make the agent ask Nix for an arbitrary file, and never a `.drv`
(realising one builds it). A lock is refused, never guessed at, when it is larger
than MAX_LOCK_BYTES, nested too deeply, names a key twice in one object, or has
a field the format does not know.

Must not: read files, talk to git or Nix, or decide whether the lock's
commit may be deployed (the source layer checks its history).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, get_args

from reconciler.core.errors import CommitFailure, PrebuiltRefusal

API_VERSION = "pullnix.dev/v1alpha1"
KIND = "SystemLock"
#: Nix's store path syntax: the store dir, 32 characters of Nix's base 32, a name (not
#: "." or "..", nor longer than 211 characters: Nix refuses those).
STORE_PATH = re.compile(
    r"/nix/store/[0-9abcdfghijklmnpqrsvwxyz]{32}-(?!\.\.?$)[A-Za-z0-9+\-._?=]{1,211}"
)
#: How many of a lock's hosts NotInLock names.
_LISTED = 20
#: The most a lock may weigh: ~50,000 hosts as `render_lock` writes them. Bounds the parse.
MAX_LOCK_BYTES = 8 * 1024 * 1024
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

#: Why a commit's prebuilt system was refused; like a failed build, each is tied to the
#: commit and waits for a new one (or `pullnix retry`) instead of being fetched again.
PREBUILT_REFUSALS: frozenset[str] = frozenset(get_args(PrebuiltRefusal))


class InvalidLock(CommitFailure):
    """The lock file cannot be used as written; the message names the file and field."""

    reason = "InvalidSpec"
    failure = "InvalidSpec"


class NotInLock(CommitFailure):
    """The lock was published without this host; nothing is deployed."""

    reason = "NotInLock"
    failure = "NotInLock"


class LockFromAnotherHistory(CommitFailure):
    """The lock names a source commit the commit carrying it does not descend from."""

    reason = "LockFromAnotherHistory"
    failure = "LockFromAnotherHistory"


@dataclass(frozen=True)
class LockedHost:
    store_path: str
    closure_size: int | None = None  # bytes, as `nix path-info -S` reported it in CI


@dataclass(frozen=True)
class SystemLock:
    source_revision: str  # the commit CI evaluated and built
    created_at: str
    hosts: Mapping[str, LockedHost]


def parse_lock(text: bytes, origin: str) -> SystemLock:
    """The lock in `text`; InvalidLock naming `origin` and the field on any fault."""

    def bad(field: str, what: str) -> InvalidLock:
        where = f"{origin}: {field}: " if field else f"{origin}: "
        return InvalidLock(
            f"{where}{what}; the lock is written by `pullnix publish`, re-run it rather "
            "than editing the file"
        )

    doc = _decode(text, bad)
    if not isinstance(doc, dict):
        raise bad("", f"must be a JSON object, not {_kind(doc)}")
    if doc.get("apiVersion") != API_VERSION:
        raise bad("apiVersion", f"must be {API_VERSION!r}, not {_show(doc.get('apiVersion'))}")
    if doc.get("kind") != KIND:
        raise bad("kind", f"must be {KIND!r}, not {_show(doc.get('kind'))}")
    revision = doc.get("sourceRevision")
    if not isinstance(revision, str) or not _SHA.fullmatch(revision):
        raise bad("sourceRevision", f"{_show(revision)} is not a full commit id")
    created = doc.get("createdAt", "")
    if not isinstance(created, str):
        raise bad("createdAt", f"must be an RFC 3339 time, not {_kind(created)}")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "sourceRevision", "createdAt", "hosts"})
    if unknown:
        raise bad(_cut(unknown[0]), "unknown field (known: createdAt, hosts, sourceRevision)")
    hosts = doc.get("hosts")
    if not isinstance(hosts, dict):
        raise bad("hosts", f"must be an object of host name -> entry, not {_kind(hosts)}")
    entries = {name: _locked_host(name, entry, bad) for name, entry in hosts.items()}
    return SystemLock(revision, created, MappingProxyType(entries))


def _decode(text: bytes, bad: Callable[[str, str], InvalidLock]) -> Any:
    """`text` as JSON, bounded in size and depth, every object's keys unique."""
    if len(text) > MAX_LOCK_BYTES:
        raise bad("", f"is {len(text)} bytes, more than a lock may be ({MAX_LOCK_BYTES})")
    try:
        doc = json.loads(text.decode("utf-8"), object_pairs_hook=_unique_keys)
    except UnicodeDecodeError:
        raise bad("", "is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise bad(
            "", f"is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    except _DuplicateKey as exc:
        raise bad("", f"has the key {_show(exc.args[0])} twice in one object") from None
    except RecursionError:
        raise bad("", "is nested too deeply to be a lock") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise bad("", f"is not a lock: {exc}") from None
    return doc


def _locked_host(name: str, entry: Any, bad: Callable[[str, str], InvalidLock]) -> LockedHost:
    """One host's entry of the lock; `bad` makes the error naming the field."""
    field = f"hosts[{_cut(json.dumps(name))}]"
    if not isinstance(entry, dict):
        raise bad(field, f"must be an object with storePath, not {_kind(entry)}")
    unknown = sorted(set(entry) - {"storePath", "closureSize"})
    if unknown:
        raise bad(f"{field}.{_cut(unknown[0])}", "unknown field (known: closureSize, storePath)")
    path = entry.get("storePath")
    if not isinstance(path, str) or not STORE_PATH.fullmatch(path):
        raise bad(
            f"{field}.storePath",
            f"{_show(path)} is not a Nix store path (/nix/store/<hash>-<name>)",
        )
    if path.endswith(".drv"):
        raise bad(
            f"{field}.storePath",
            f"{path!r} is a derivation, not a built system: the machine would build it",
        )
    size = entry.get("closureSize")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise bad(f"{field}.closureSize", f"{_show(size)} is not a size in bytes")
    return LockedHost(path, size)


def host_entry(lock: SystemLock, host: str, origin: str) -> LockedHost:
    """This host's entry; NotInLock (naming the hosts the lock has) when there is none."""
    entry = lock.hosts.get(host)
    if entry is None:
        names = sorted(lock.hosts)
        listed = ", ".join(names[:_LISTED]) or "none"
        if len(names) > _LISTED:  # the message lands in status.json: a few names suffice
            listed += f" and {len(names) - _LISTED} more"
        raise NotInLock(
            f"{origin} (built from {lock.source_revision[:12]}) has no system for host "
            f"{host!r} (hosts: {listed}); publish it with `pullnix publish --hosts {host}` "
            "or check `host` in agent.toml"
        )
    return entry


def render_lock(source_revision: str, created_at: str, hosts: Mapping[str, LockedHost]) -> str:
    """The lock file's text: stable key order, one host per line group, a final newline."""
    doc: dict[str, Any] = {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "sourceRevision": source_revision,
        "createdAt": created_at,
        "hosts": {
            name: {
                "storePath": entry.store_path,
                **({"closureSize": entry.closure_size} if entry.closure_size is not None else {}),
            }
            for name, entry in sorted(hosts.items())
        },
    }
    return json.dumps(doc, indent=2) + "\n"


class _DuplicateKey(Exception):
    """A JSON object names one key twice; which value counts would be a guess."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            raise _DuplicateKey(key)
        doc[key] = value
    return doc


def _show(value: object) -> str:
    """`value` as a message quotes it: its repr, cut short (messages land in status)."""
    return _cut(repr(value))


def _cut(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else f"{text[: limit - 20]}… ({len(text)} characters)"


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "an object",
    }.get(type(value), type(value).__name__)
