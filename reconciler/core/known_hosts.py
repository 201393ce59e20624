"""Pinned SSH host keys: parsing an OpenSSH `known_hosts` text and judging a presented key.

Owns the rule "an SSH remote is trusted only when the key it presents is pinned
for that host in the machine's known_hosts file": plain, wildcard, negated,
`[host]:port` and hashed (`|1|salt|hmac`) host patterns, `@revoked` lines.
Keys are compared by their SHA-256 fingerprint (the digest of the key blob),
which is what libgit2 reports for the key the server presented.

Must not: read files, open connections or trust anything the repository says.
The caller reads the file and supplies the presented fingerprint.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class KnownHost:
    """One usable line of a known_hosts file."""

    patterns: tuple[str, ...]  # host patterns, or one hashed `|1|salt|hmac` entry
    key_type: str
    key_sha256: bytes  # SHA-256 of the decoded key blob
    revoked: bool = False
    line: int = 0


class HostKeyVerdict(Enum):
    TRUSTED = "trusted"
    UNKNOWN = "unknown"  # no pinned key for this host
    CHANGED = "changed"  # keys pinned for this host, none is the one presented
    REVOKED = "revoked"  # the presented key is marked @revoked


def parse_known_hosts(text: str) -> list[KnownHost]:
    """Every host-key line of `text`; comments, blank, @cert-authority and malformed lines
    are skipped (a skipped line can only make fewer keys trusted, never more)."""
    entries: list[KnownHost] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        revoked = False
        if fields[0].startswith("@"):
            if fields[0] != "@revoked":
                continue  # @cert-authority: host certificates are not supported
            revoked = True
            fields = fields[1:]
        if len(fields) < 3:
            continue
        try:
            blob = base64.b64decode(fields[2], validate=True)
        except (binascii.Error, ValueError):
            continue
        entries.append(
            KnownHost(
                patterns=tuple(fields[0].split(",")),
                key_type=fields[1],
                key_sha256=hashlib.sha256(blob).digest(),
                revoked=revoked,
                line=number,
            )
        )
    return entries


def host_token(host: str, port: int | None) -> str:
    """The name OpenSSH files a host under: `host`, or `[host]:port` off port 22."""
    if port is None or port == 22:
        return host
    return f"[{host}]:{port}"


def matches_host(patterns: tuple[str, ...], host: str, port: int | None) -> bool:
    """OpenSSH semantics: any positive pattern matches and no negated one does."""
    token = host_token(host, port)
    matched = False
    for pattern in patterns:
        if pattern.startswith("|1|"):
            if _hashed_match(pattern, token):
                matched = True
            continue
        negated = pattern.startswith("!")
        body = pattern[1:] if negated else pattern
        if _wildcard(body).fullmatch(token.lower()):
            if negated:
                return False
            matched = True
    return matched


def judge_host_key(
    entries: list[KnownHost], host: str, port: int | None, presented_sha256: bytes
) -> HostKeyVerdict:
    """Is the key the server presented (by SHA-256 fingerprint) pinned for `host`:`port`?"""
    pinned = [e for e in entries if matches_host(e.patterns, host, port)]
    if any(e.revoked and e.key_sha256 == presented_sha256 for e in entries):
        return HostKeyVerdict.REVOKED
    if any(not e.revoked and e.key_sha256 == presented_sha256 for e in pinned):
        return HostKeyVerdict.TRUSTED
    if any(not e.revoked for e in pinned):
        return HostKeyVerdict.CHANGED
    return HostKeyVerdict.UNKNOWN


def fingerprint(sha256: bytes) -> str:
    """The form `ssh-keygen -l` prints: SHA256:<unpadded base64>."""
    return "SHA256:" + base64.b64encode(sha256).decode().rstrip("=")


def _wildcard(pattern: str) -> re.Pattern[str]:
    """OpenSSH patterns know only `*` and `?`; everything else (like `[`) is literal."""
    parts = (".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower())
    return re.compile("".join(parts))


def _hashed_match(entry: str, token: str) -> bool:
    parts = entry.split("|")
    if len(parts) != 4:
        return False
    try:
        salt = base64.b64decode(parts[2], validate=True)
        expected = base64.b64decode(parts[3], validate=True)
    except (binascii.Error, ValueError):
        return False
    digest = hmac.new(salt, token.encode(), hashlib.sha1).digest()
    return hmac.compare_digest(digest, expected)
