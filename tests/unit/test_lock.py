"""The SystemLock file: every malformed lock is refused naming its file and field."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reconciler.core.lock import (
    MAX_LOCK_BYTES,
    InvalidLock,
    LockedHost,
    NotInLock,
    host_entry,
    parse_lock,
    render_lock,
)

SHA = "3f2a1c" + "0" * 34
PATH = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-24.05"
ORIGIN = "pullnix.lock.json@3f2a1c000000"


def lock(**changes: Any) -> bytes:
    doc: dict[str, Any] = {
        "apiVersion": "pullnix.dev/v1alpha1",
        "kind": "SystemLock",
        "sourceRevision": SHA,
        "createdAt": "2026-12-01T12:00:00Z",
        "hosts": {"edge-01": {"storePath": PATH, "closureSize": 1234}},
    }
    doc.update(changes)
    return json.dumps(doc).encode()


def test_a_lock_written_by_render_lock_reads_back():
    text = render_lock(SHA, "2026-12-01T12:00:00Z", {"edge-01": LockedHost(PATH, 1234)})
    parsed = parse_lock(text.encode(), ORIGIN)
    assert parsed.source_revision == SHA
    assert dict(parsed.hosts) == {"edge-01": LockedHost(PATH, 1234)}
    assert host_entry(parsed, "edge-01", ORIGIN).store_path == PATH


@pytest.mark.parametrize(
    ("text", "field", "what"),
    [
        (b"{not json", "", "is not valid JSON (line 1, column 2"),
        (b"\xff\xfe", "", "is not UTF-8 text"),
        (b"[]", "", "must be a JSON object, not a list"),
        (lock(apiVersion="v2"), "apiVersion", "must be 'pullnix.dev/v1alpha1', not 'v2'"),
        (lock(kind="NixOSDeployment"), "kind", "must be 'SystemLock'"),
        (lock(sourceRevision="main"), "sourceRevision", "'main' is not a full commit id"),
        (lock(createdAt=5), "createdAt", "must be an RFC 3339 time, not a number"),
        (lock(hosts=[]), "hosts", "must be an object of host name -> entry, not a list"),
        (lock(hosts={"edge-01": "x"}), 'hosts["edge-01"]', "must be an object with storePath"),
        (
            lock(hosts={"edge-01": {"storePath": "/etc/shadow"}}),
            'hosts["edge-01"].storePath',
            "'/etc/shadow' is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": "/nix/store/short-name"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH + "/../../etc"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {}}),
            'hosts["edge-01"].storePath',
            "None is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH, "closureSize": -1}}),
            'hosts["edge-01"].closureSize',
            "-1 is not a size in bytes",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH, "storepath": PATH}}),
            'hosts["edge-01"].storepath',
            "unknown field",
        ),
    ],
)
def test_a_malformed_lock_is_invalid_spec_naming_file_and_field(text: bytes, field: str, what: str):
    with pytest.raises(InvalidLock) as caught:
        parse_lock(text, ORIGIN)
    assert caught.value.reason == "InvalidSpec"
    prefix = f"{ORIGIN}: {field}: " if field else f"{ORIGIN}: "
    message = caught.value.message
    assert message.startswith(prefix), message
    assert what in message.removeprefix(prefix), message
    assert "pullnix publish" in caught.value.message


def test_a_host_missing_from_the_lock_is_not_in_lock_and_names_the_hosts_it_has():
    parsed = parse_lock(lock(), ORIGIN)
    with pytest.raises(NotInLock) as caught:
        host_entry(parsed, "edge-02", ORIGIN)
    assert caught.value.reason == "NotInLock"
    assert "has no system for host 'edge-02' (hosts: edge-01)" in caught.value.message
    assert "pullnix publish --hosts edge-02" in caught.value.message


def _raw(hosts: str, extra: str = "") -> bytes:
    """A lock written by hand, for what json.dumps cannot write (duplicate keys)."""
    head = f'"apiVersion": "pullnix.dev/v1alpha1", "kind": "SystemLock", "sourceRevision": "{SHA}"'
    return ("{" + head + extra + ', "hosts": ' + hosts + "}").encode()


EVIL = "/nix/store/" + "b" * 32 + "-nixos-system-evil"


@pytest.mark.parametrize(
    ("text", "field", "what"),
    [
        # A reviewer reads the first entry, json.loads keeps the last: refuse the guess.
        (
            _raw(f'{{"edge-01": {{"storePath": "{PATH}"}}, "edge-01": {{"storePath": "{EVIL}"}}}}'),
            "",
            "has the key 'edge-01' twice in one object",
        ),
        (
            _raw("{}", f', "sourceRevision": "{"b" * 40}"'),
            "",
            "has the key 'sourceRevision' twice",
        ),
        # Deep nesting and huge numbers are not JSON errors to Python but must not escape
        # as RecursionError / ValueError (an internal error retried forever).
        (_raw("{}", ', "x": ' + "[" * 100_000 + "]" * 100_000), "", "nested too deeply"),
        (
            _raw(f'{{"edge-01": {{"storePath": "{PATH}", "closureSize": {"9" * 5000}}}}}'),
            "",
            "is not a lock",
        ),
        # nix-store --realise of a .drv builds it: the machine must never build.
        (
            lock(hosts={"edge-01": {"storePath": PATH + ".drv"}}),
            'hosts["edge-01"].storePath',
            "is a derivation",
        ),
        (
            lock(hosts={"edge-01": {"storePath": "/nix/store/" + "a" * 32 + "-.."}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH + "/"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH + "\n"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": PATH + " --option x y"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (
            lock(hosts={"edge-01": {"storePath": "/gnu/store/" + "a" * 32 + "-x"}}),
            'hosts["edge-01"].storePath',
            "is not a Nix store path",
        ),
        (lock(sourceRevision="3f2a1c"), "sourceRevision", "is not a full commit id"),
        (lock(sourceRevision="g" * 40), "sourceRevision", "is not a full commit id"),
        (lock(sourceRevision=None), "sourceRevision", "None is not a full commit id"),
        (lock(Hosts={}), "Hosts", "unknown field"),
        (lock(hosts={"edge-01": {"storePath": 5}}), 'hosts["edge-01"].storePath', "5 is not"),
        (
            lock(hosts={"edge-01": {"storePath": PATH, "closureSize": True}}),
            'hosts["edge-01"].closureSize',
            "True is not a size in bytes",
        ),
    ],
)
def test_hostile_locks_are_invalid_spec_not_internal_errors(text: bytes, field: str, what: str):
    with pytest.raises(InvalidLock) as caught:
        parse_lock(text, ORIGIN)
    prefix = f"{ORIGIN}: {field}: " if field else f"{ORIGIN}: "
    message = caught.value.message
    assert message.startswith(prefix), message
    assert what in message.removeprefix(prefix), message


def test_a_lock_larger_than_the_bound_is_refused_before_it_is_parsed():
    padding = b" " * (MAX_LOCK_BYTES + 1)
    with pytest.raises(InvalidLock) as caught:
        parse_lock(lock()[:-1] + padding + b"}", ORIGIN)
    assert f"more than a lock may be ({MAX_LOCK_BYTES})" in caught.value.message


def test_not_in_lock_names_a_bounded_number_of_the_hosts_a_large_lock_has():
    """The message goes into status.json and every `pullnix status`: a fleet of 5000 hosts
    must not put 5000 names there."""
    hosts = {f"edge-{i:04}": {"storePath": PATH} for i in range(5000)}
    parsed = parse_lock(lock(hosts=hosts), ORIGIN)
    with pytest.raises(NotInLock) as caught:
        host_entry(parsed, "web-01", ORIGIN)
    message = caught.value.message
    assert "(hosts: edge-0000, edge-0001," in message
    assert "edge-0019 and 4980 more)" in message
    assert "edge-0020" not in message
    assert len(message) < 1000


@pytest.mark.parametrize(
    "text",
    [
        lock(hosts={"edge-01": {"storePath": "/etc/" + "x" * 1_000_000}}),
        lock(sourceRevision="x" * 1_000_000),
        lock(apiVersion=["v"] * 100_000),
        lock(hosts={"e" * 1_000_000: "not an object"}),
        lock(hosts={"edge-01": {"storePath": PATH, "x" * 1_000_000: 1}}),
        lock(**{"y" * 1_000_000: 1}),
    ],
)
def test_what_a_message_quotes_from_a_hostile_lock_is_bounded(text: bytes):
    """Messages land in status.json and every `pullnix status`: a value or a name from the
    lock is quoted only in part."""
    with pytest.raises(InvalidLock) as caught:
        parse_lock(text, ORIGIN)
    assert len(caught.value.message) < 1000, caught.value.message[:300]


def test_a_store_path_name_longer_than_nix_allows_is_refused():
    long = "/nix/store/" + "a" * 32 + "-" + "x" * 212
    with pytest.raises(InvalidLock) as caught:
        parse_lock(lock(hosts={"edge-01": {"storePath": long + ".drv"}}), ORIGIN)
    assert "is not a Nix store path" in caught.value.message
    ok = "/nix/store/" + "a" * 32 + "-" + "x" * 211
    assert parse_lock(lock(hosts={"edge-01": {"storePath": ok}}), ORIGIN).hosts
