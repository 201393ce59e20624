"""SSH host-key pinning for libgit2 connections: the presented key against known_hosts.

Owns getting the host key an SSH server presented out of libgit2 and judging it
against the machine's pinned `known_hosts_file` (rules in
reconciler.core.known_hosts). An unknown, changed or revoked key raises a
TerminalError with reason HostKeyRefused naming the host, the fingerprint and
the file. No pinned file configured means every SSH host is refused: there is
no trust on first use.

Why the frame lookup: pygit2 1.21 calls `certificate_check(None, valid, host)`
and keeps libgit2's `git_cert *` to itself, and its cffi declaration of
`git_cert_hostkey` is older than libgit2's struct. The pointer is read from
pygit2's own callback frame, and the SHA-256 digest from the struct's fixed
layout (cert_type, type, md5[16], sha1[20], sha256[32]); the flags word must
say the digest is there. Anything unexpected (another pygit2 whose callback
is named or shaped differently) refuses the connection with a HostKeyRefused
error that names the pygit2 version found and the one this was written for
(`WRITTEN_FOR`, the range pyproject.toml allows): this fails closed, never open.

Limitation: libgit2 (libssh2) picks the host-key algorithm with the server and
cannot be told which one is pinned, so pin every key type the server offers
(`ssh-keyscan -p PORT HOST` prints them all); a key of another type than the
pinned ones reads as CHANGED and is refused.

Must not: trust a host for any reason but a pinned key; fall back to
~/.ssh/known_hosts.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import FrameType

from reconciler.core.errors import TerminalError
from reconciler.core.known_hosts import (
    HostKeyVerdict,
    fingerprint,
    host_token,
    judge_host_key,
    parse_known_hosts,
)

REASON = "HostKeyRefused"
WRITTEN_FOR = "pygit2 1.21 (libgit2 1.9)"
_CERT_HOSTKEY_LIBSSH2 = 2  # git_cert_t GIT_CERT_HOSTKEY_LIBSSH2
_CERT_SSH_SHA256 = 1 << 2  # git_cert_ssh_t GIT_CERT_SSH_SHA256
_SHA256_OFFSET = 4 + 4 + 16 + 20


def presented_sha256(frame: FrameType | None) -> bytes | None:
    """The SHA-256 digest of the host key libgit2 is asking about, or None if not found.

    `frame` must be the caller of `certificate_check`: pygit2's `_certificate_check_cb`.
    """
    from pygit2 import ffi

    if frame is None or frame.f_code.co_name != "_certificate_check_cb":
        return None
    try:
        cert = frame.f_locals["cert_i"]
        if cert == ffi.NULL or cert.cert_type != _CERT_HOSTKEY_LIBSSH2:
            return None
        raw = bytes(ffi.buffer(ffi.cast("unsigned char *", cert), _SHA256_OFFSET + 32))
    except (KeyError, AttributeError, TypeError):  # not the pygit2 this was written for
        return None
    flags = int.from_bytes(raw[4:8], sys.byteorder)
    if not flags & _CERT_SSH_SHA256:
        return None
    return raw[_SHA256_OFFSET : _SHA256_OFFSET + 32]


def check_host_key(
    known_hosts_file: Path | None, host: str, port: int | None, digest: bytes | None
) -> None:
    """Return if `digest` is pinned for host:port in `known_hosts_file`; else raise."""
    where = host_token(host, port)
    if digest is None:
        raise TerminalError(
            f"cannot read the host key {where} presented, so it cannot be checked against "
            f"known_hosts_file; refusing the connection. pygit2 {_pygit2_version()} is "
            f"installed and the host-key check is written for {WRITTEN_FOR}: install "
            "that version (pyproject.toml pins it)",
            reason=REASON,
        )
    if known_hosts_file is None:
        raise TerminalError(
            f"SSH host {where} presented key {fingerprint(digest)}, but [source] "
            "known_hosts_file is not set; pin the host key there (ssh-keyscan -p PORT HOST)",
            reason=REASON,
        )
    try:
        text = known_hosts_file.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise TerminalError(
            f"cannot read known_hosts_file {known_hosts_file}: {exc}; refusing SSH host {where}",
            reason=REASON,
        ) from None
    verdict = judge_host_key(parse_known_hosts(text), host, port, digest)
    if verdict is HostKeyVerdict.TRUSTED:
        return
    what = {
        HostKeyVerdict.UNKNOWN: "is unknown: no key is pinned for it in",
        HostKeyVerdict.CHANGED: "CHANGED: the key it presented is not the one pinned in",
        HostKeyVerdict.REVOKED: "presented a key marked @revoked in",
    }[verdict]
    raise TerminalError(
        f"SSH host key of {where} {what} {known_hosts_file} (presented {fingerprint(digest)}). "
        "If the server's key really changed, verify it out of band and update that file",
        reason=REASON,
    )


def _pygit2_version() -> str:
    from importlib.metadata import version

    import pygit2

    return f"{version('pygit2')} (libgit2 {pygit2.LIBGIT2_VERSION})"
