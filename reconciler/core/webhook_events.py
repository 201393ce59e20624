"""Webhook push events from GitHub, Gitea and GitLab: who sent them, and do they concern us.

Owns the pure half of the webhook receiver: given the request's headers, its
raw body, the shared secret and the tracked branch, one verdict.

Authentication comes first and is required, before the body is parsed:

- GitHub signs the body: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256>`;
- Gitea (and Forgejo) sign it too: `X-Gitea-Signature: <hex HMAC-SHA256>`;
- GitLab does not sign anything: it sends the secret token itself in
  `X-Gitlab-Token`. That proves the sender knows the secret but does not bind
  the body to it, so it is only as safe as the transport (use TLS between the
  forge and the machine, or a loopback proxy). It is compared in constant time.

Every comparison is `hmac.compare_digest`. A request without any of these
headers, or with a wrong one, is Rejected (401) and nothing is queued. An
authentic request that is not a push (GitHub's ping, an issue event), or a
push to another branch or a tag, is Ignored (202). An authentic push to the
tracked branch is a Push (202, a pass is queued). The receiver never trusts
the `after` commit it names: the pass fetches and verifies on its own.

Must not: read the socket, the secret file or the clock.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Forge = Literal["github", "gitea", "gitlab"]
#: Bodies above this are refused (413) without being read; GitHub caps payloads at 25 MB,
#: but a push that large only lists more commits, which the agent does not need.
MAX_BODY = 1024 * 1024


@dataclass(frozen=True)
class Push:
    """An authentic push to the tracked branch: queue a pass."""

    forge: Forge
    ref: str
    after: str
    status: int = 202


@dataclass(frozen=True)
class Ignored:
    """Authentic, but nothing for this machine to do."""

    forge: Forge
    reason: str
    status: int = 202


@dataclass(frozen=True)
class Rejected:
    """Not authentic or not readable: answer `status`, queue nothing."""

    reason: str
    status: int = 401


Verdict = Push | Ignored | Rejected


def sign(secret: bytes, body: bytes) -> str:
    """The hex HMAC-SHA256 of `body` (what GitHub and Gitea send)."""
    return hmac.new(secret, body, hashlib.sha256).hexdigest()


def judge(headers: Mapping[str, str], body: bytes, secret: bytes, branch: str) -> Verdict:
    """The verdict on one request; `headers` keys in any case."""
    h = {k.lower(): v for k, v in headers.items()}
    if not secret:
        return Rejected("no webhook secret is configured", status=503)
    forge, refusal = _authenticate(h, body, secret)
    if forge is None:
        return Rejected(refusal)
    event = _event(forge, h)
    if event not in ("push", "Push Hook"):
        return Ignored(forge, f"{event or 'an unnamed'} event is not a push")
    try:
        payload: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return Rejected("the body is not JSON", status=400)
    if not isinstance(payload, dict) or not isinstance(payload.get("ref"), str):
        return Rejected("the push event has no ref", status=400)
    ref: str = payload["ref"]
    after = payload.get("after")
    if ref != f"refs/heads/{branch}":
        return Ignored(forge, f"a push to {ref}, not refs/heads/{branch}")
    return Push(forge, ref, after if isinstance(after, str) else "")


def _authenticate(h: Mapping[str, str], body: bytes, secret: bytes) -> tuple[Forge | None, str]:
    if "x-gitea-signature" in h:
        ok = _same(h["x-gitea-signature"].strip().lower(), sign(secret, body))
        return ("gitea", "") if ok else (None, "X-Gitea-Signature does not match")
    if "x-gitlab-token" in h:
        ok = hmac.compare_digest(_bytes(h["x-gitlab-token"]), secret)
        return ("gitlab", "") if ok else (None, "X-Gitlab-Token does not match")
    if "x-hub-signature-256" in h:
        scheme, _, digest = h["x-hub-signature-256"].strip().partition("=")
        ok = scheme == "sha256" and _same(digest.lower(), sign(secret, body))
        return ("github", "") if ok else (None, "X-Hub-Signature-256 does not match")
    return None, (
        "no signature: send X-Hub-Signature-256 (GitHub), X-Gitea-Signature "
        "(Gitea) or X-Gitlab-Token (GitLab)"
    )


def _event(forge: Forge, h: Mapping[str, str]) -> str:
    names = {
        "github": ("x-github-event",),
        "gitea": ("x-gitea-event", "x-github-event"),
        "gitlab": ("x-gitlab-event",),
    }[forge]
    for name in names:
        if name in h:
            return h[name].strip()
    return "push"  # a signed request without an event header: treat the body as a push


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(_bytes(given), expected.encode())


def _bytes(text: str) -> bytes:
    """A header as bytes (headers may carry any octet; compare_digest wants ASCII or bytes)."""
    return text.encode("utf-8", "replace")
