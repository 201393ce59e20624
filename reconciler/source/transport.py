"""Talking to one remote with pygit2: credentials, host-key pinning, timeouts, error kinds.

Owns what differs between file://, git://, smart HTTP(S) and SSH:

- HTTP(S) with `token_file`: the token is sent up front as
  `Authorization: Bearer TOKEN` (one round trip, no 401 first); a server that
  answers 401 anyway is then given HTTP basic with the token as the password
  and the URL's user name (or "pullnix") — what GitHub, GitLab and Gitea accept
  for access tokens. The file is read on every connection, so a rotated token
  takes effect at once. Use https:// outside tests: the token is a secret.
- SSH with `ssh_key_file` (a deploy key, no passphrase; KEY.pub is used when it
  exists) and the host key pinned in `known_hosts_file` (reconciler.source.hostkey).
- Timeouts: libgit2's process-wide connect and read/write timeouts
  (GIT_OPT_SET_SERVER_CONNECT_TIMEOUT / GIT_OPT_SET_SERVER_TIMEOUT through
  `pygit2.settings`), set by `set_network_timeouts`. With libgit2 1.9 they
  bound every transport, SSH included: a server that accepts and never answers
  (HTTP), never sends its SSH banner, or takes the login and then never starts
  git-upload-pack fails with "timed out" (TransientError) after the read
  timeout, as tests/integration/test_source_{fetch,ssh}.py show against real
  listeners and a real sshd. So no worker thread or deadline wrapper is needed.
  They bound each read, not a whole fetch: a server that trickles a byte per
  read timeout keeps a fetch alive.
- What a URL looks like in anything a user reads (`redact_url`, in reconciler/common/urls.py
  so the helper's gitRemote check shows URLs the same way): user info with
  a password or token (`https://user:TOKEN@host/...`) becomes `user:***@`, in
  messages, `FetchResult.url` and `skipped`, so it never reaches status.json or
  a log. Prefer `token_file` to a token in the URL.
- Turning a pygit2 failure into TransientError (retry: unreachable, timed out,
  cut off) or TerminalError (stop: authentication refused, host key or TLS
  certificate refused).

Must not: retry (reconciler.source.retry does), decide anything about commits,
or read credentials from anywhere but the machine config.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pygit2

from reconciler.common.config import SourceConfig
from reconciler.common.urls import redact, redact_url
from reconciler.core.errors import PullnixError, TerminalError, TransientError
from reconciler.source.hostkey import REASON as HOSTKEY_REASON
from reconciler.source.hostkey import check_host_key, presented_sha256

DEFAULT_HTTP_USER = "pullnix"


@dataclass(frozen=True)
class Endpoint:
    """Where a URL points: scheme ("file", "git", "http", "https", "ssh"), host, port, user."""

    scheme: str
    host: str
    port: int | None
    user: str | None


def endpoint(url: str) -> Endpoint:
    """Parse `url`, including scp-like `user@host:path` (SSH on port 22)."""
    if "://" not in url:
        if ":" in url.split("/", 1)[0]:
            userhost = url.split(":", 1)[0]
            user, _, host = userhost.rpartition("@")
            return Endpoint("ssh", host, None, user or None)
        return Endpoint("file", "", None, None)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme in ("ssh+git", "git+ssh"):
        scheme = "ssh"
    return Endpoint(scheme, parts.hostname or "", parts.port, parts.username)


def set_network_timeouts(connect_seconds: float, io_seconds: float) -> None:
    """Bound every connect and every read/write of libgit2 (process-wide settings)."""
    pygit2.settings.server_connect_timeout = int(connect_seconds * 1000)
    pygit2.settings.server_timeout = int(io_seconds * 1000)


class SourceCallbacks(pygit2.RemoteCallbacks):
    """pygit2 callbacks for one connection to `url`: credentials, host key, progress."""

    def __init__(self, url: str, config: SourceConfig) -> None:
        super().__init__()
        self.url = redact_url(url)  # for messages only
        self.config = config
        self.endpoint = endpoint(url)
        self.credential_requests = 0

    def _token(self) -> str | None:
        if self.config.token_file is None or self.endpoint.scheme not in ("http", "https"):
            return None
        try:
            token = self.config.token_file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise TerminalError(
                f"cannot read token_file {self.config.token_file}: {exc}; needed for {self.url}",
                reason="AuthenticationFailed",
            ) from None
        if not token:
            raise TerminalError(
                f"token_file {self.config.token_file} is empty; "
                f"write the access token for {self.url} there",
                reason="AuthenticationFailed",
            )
        return token

    def custom_headers(self) -> list[str] | None:
        token = self._token()
        return [f"Authorization: Bearer {token}"] if token else None

    def credentials(self, _url: str, username_from_url: str | None, allowed_types: Any) -> Any:
        allowed = pygit2.enums.CredentialType(allowed_types)
        if allowed & pygit2.enums.CredentialType.SSH_KEY and self.config.ssh_key_file:
            self._count_attempt()
            key = self.config.ssh_key_file
            pub = key.with_name(key.name + ".pub")
            return pygit2.Keypair(
                username_from_url or "git", str(pub) if pub.exists() else None, str(key), ""
            )
        token = self._token()
        if allowed & pygit2.enums.CredentialType.USERPASS_PLAINTEXT and token:
            self._count_attempt()
            return pygit2.UserPass(username_from_url or DEFAULT_HTTP_USER, token)
        if allowed & pygit2.enums.CredentialType.USERNAME:  # asked before the key; not a try
            return pygit2.Username(username_from_url or "git")
        raise TerminalError(
            f"{self.url}: the server asks for credentials and none is "
            f"configured ({self._credential_source()})",
            reason="AuthenticationFailed",
        )

    def _count_attempt(self) -> None:
        """libgit2 asks again after a refusal; the second ask means the first was refused."""
        self.credential_requests += 1
        if self.credential_requests > 1:
            raise TerminalError(
                f"{self.url}: the server refused our credentials "
                f"({self._credential_source()}); check them and the "
                "server's access rules",
                reason="AuthenticationFailed",
            )

    def _credential_source(self) -> str:
        if self.endpoint.scheme == "ssh":
            return f"ssh_key_file = {self.config.ssh_key_file or 'unset'}"
        return f"token_file = {self.config.token_file or 'unset'}"

    def certificate_check(self, _certificate: None, valid: bool, host: bytes) -> bool:
        if self.endpoint.scheme == "ssh":
            digest = presented_sha256(sys._getframe(1))
            check_host_key(
                self.config.known_hosts_file, self.endpoint.host, self.endpoint.port, digest
            )
            return True
        if not valid:
            raise TerminalError(
                f"{self.url}: the TLS certificate of {host.decode()} is not "
                "valid for it; fix the server's certificate or the CA store",
                reason="CertificateRefused",
            )
        return True


_TERMINAL_HINTS = (
    ("authentication", "AuthenticationFailed"),
    ("unauthorized", "AuthenticationFailed"),
    ("status code: 401", "AuthenticationFailed"),
    ("status code: 403", "AuthenticationFailed"),
    ("username/publickey combination invalid", "AuthenticationFailed"),
    ("permission denied", "AuthenticationFailed"),
)


def classify(exc: BaseException, url: str) -> PullnixError:
    """A pygit2 (or our own callback's) failure on `url` as a transient or terminal error."""
    if isinstance(exc, PullnixError):
        return exc
    message = redact(str(exc).strip() or type(exc).__name__, url)
    url = redact_url(url)
    if isinstance(exc, pygit2.errors.AuthError):
        return TerminalError(
            f"{url}: authentication refused: {message}", reason="AuthenticationFailed"
        )
    if isinstance(exc, pygit2.errors.CertificateError):
        return TerminalError(f"{url}: certificate refused: {message}", reason=HOSTKEY_REASON)
    lowered = message.lower()
    for hint, reason in _TERMINAL_HINTS:
        if hint in lowered:
            return TerminalError(
                f"{url}: {message}; check the credentials in the machine config", reason=reason
            )
    return TransientError(f"{url}: {message}", reason="SourceUnavailable")
