"""Pinned host keys: the known_hosts rules as a table of cases, and reading the key
libgit2 was presented (which fails closed on a pygit2 of another shape)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
from importlib.metadata import version
from pathlib import Path
from types import FrameType

import pygit2
import pytest

from reconciler.core.errors import TerminalError
from reconciler.core.known_hosts import (
    HostKeyVerdict,
    fingerprint,
    host_token,
    judge_host_key,
    matches_host,
    parse_known_hosts,
)
from reconciler.source.hostkey import WRITTEN_FOR, check_host_key, presented_sha256

KEY_A = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519 key-a").decode()
KEY_B = base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519 key-b").decode()
SHA_A = hashlib.sha256(base64.b64decode(KEY_A)).digest()
SHA_B = hashlib.sha256(base64.b64decode(KEY_B)).digest()


def hashed(token: str, salt: bytes = b"0123456789abcdefghij") -> str:
    digest = hmac.new(salt, token.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(digest).decode()}"


@pytest.mark.parametrize(
    ("text", "host", "port", "presented", "verdict"),
    [
        (f"git.example.org ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_A, "trusted"),
        (f"git.example.org ssh-ed25519 {KEY_A}", "git.example.org", 22, SHA_A, "trusted"),
        (f"GIT.example.org ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_A, "trusted"),
        (f"git.example.org ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_B, "changed"),
        (f"git.example.org ssh-ed25519 {KEY_A}", "other.example.org", None, SHA_A, "unknown"),
        (f"git.example.org ssh-ed25519 {KEY_A}", "git.example.org", 2222, SHA_A, "unknown"),
        (f"[git.example.org]:2222 ssh-ed25519 {KEY_A}", "git.example.org", 2222, SHA_A, "trusted"),
        (f"[git.example.org]:2222 ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_A, "unknown"),
        (
            f"a.example.org,git.example.org ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "trusted",
        ),
        (f"*.example.org ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_A, "trusted"),
        (f"git?.example.org ssh-ed25519 {KEY_A}", "git1.example.org", None, SHA_A, "trusted"),
        (
            f"*.example.org,!git.example.org ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "unknown",
        ),
        (
            f"{hashed('git.example.org')} ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "trusted",
        ),
        (f"{hashed('[127.0.0.1]:2222')} ssh-ed25519 {KEY_A}", "127.0.0.1", 2222, SHA_A, "trusted"),
        (
            f"{hashed('git.example.org')} ssh-ed25519 {KEY_A}",
            "evil.example.org",
            None,
            SHA_A,
            "unknown",
        ),
        (
            f"{hashed('git.example.org')} ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_B,
            "changed",
        ),
        (
            f"git.example.org ssh-ed25519 {KEY_A}\n@revoked * ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "revoked",
        ),
        (
            f"git.example.org ssh-rsa {KEY_B}\ngit.example.org ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "trusted",
        ),
        (
            f"@cert-authority *.example.org ssh-ed25519 {KEY_A}",
            "git.example.org",
            None,
            SHA_A,
            "unknown",
        ),
        (f"# git.example.org ssh-ed25519 {KEY_A}", "git.example.org", None, SHA_A, "unknown"),
        ("git.example.org ssh-ed25519 not-base64!", "git.example.org", None, SHA_A, "unknown"),
        ("", "git.example.org", None, SHA_A, "unknown"),
    ],
)
def test_host_key_verdict(
    text: str, host: str, port: int | None, presented: bytes, verdict: str
) -> None:
    assert judge_host_key(parse_known_hosts(text), host, port, presented) == HostKeyVerdict(verdict)


def test_brackets_are_literal_not_character_classes() -> None:
    assert matches_host(("[127.0.0.1]:2222",), "127.0.0.1", 2222)
    assert not matches_host(("[127.0.0.1]:2222",), "1", None)


def test_host_token_uses_brackets_off_port_22() -> None:
    assert host_token("h", None) == "h"
    assert host_token("h", 22) == "h"
    assert host_token("h", 2222) == "[h]:2222"


def test_fingerprint_is_written_like_ssh_keygen() -> None:
    assert fingerprint(b"\x00" * 32) == "SHA256:" + "A" * 43


def test_parse_keeps_line_numbers_and_skips_junk() -> None:
    entries = parse_known_hosts(f"# c\n\nshort line\nh ssh-ed25519 {KEY_A} comment\n")
    assert [(e.patterns, e.key_type, e.line) for e in entries] == [(("h",), "ssh-ed25519", 4)]


# ------------------------------------------------------------ reading the presented key


def _certificate_check_cb() -> FrameType | None:
    """A frame named like pygit2's callback but shaped like no pygit2's: no `cert_i`."""
    return sys._getframe(0)


def test_the_presented_key_is_not_read_from_a_frame_of_another_shape() -> None:
    assert presented_sha256(None) is None
    assert presented_sha256(sys._getframe(0)) is None  # not pygit2's callback at all
    assert presented_sha256(_certificate_check_cb()) is None  # its name, not its locals


def test_an_unreadable_host_key_refuses_the_connection_naming_pygit2s_version() -> None:
    with pytest.raises(TerminalError) as err:
        check_host_key(Path("/nonexistent/known_hosts"), "127.0.0.1", 2222, None)
    assert err.value.reason == "HostKeyRefused"
    assert f"pygit2 {version('pygit2')} (libgit2 {pygit2.LIBGIT2_VERSION})" in err.value.message
    assert WRITTEN_FOR in err.value.message
    assert "[127.0.0.1]:2222" in err.value.message
