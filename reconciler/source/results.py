"""The values the source layer hands to the controller (frozen, no behaviour).

Must not: hold pygit2 objects or anything else that is not plain data.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FetchResult:
    """What one `GitSource.sync()` found.

    url: the remote that served (the first of `[source] urls` that answered), with any
    password in it shown as `***` (transport.redact_url): for display, not for fetching.
    tip_sha: the commit `refs/heads/<branch>` points at there (and now in the mirror).
    fetched: False when the remote's tip was already in the mirror (one round trip, no pack).
    skipped: "url: why" for every URL tried before `url`, in order.
    """

    url: str
    branch: str
    ref: str
    tip_sha: str
    fetched: bool
    received_objects: int = 0
    received_bytes: int = 0
    attempts: int = 1
    skipped: tuple[str, ...] = ()


@dataclass(frozen=True)
class Verified:
    """A commit whose signature satisfied this machine's trust roots.

    method: "ssh", "openpgp", or "none" when no trust root is configured (nothing required).
    signer: the SSH principal or the OpenPGP "uid (fingerprint)"; None with method "none".
    """

    sha: str
    signer: str | None
    method: str


@dataclass(frozen=True)
class AcceptedRevision:
    """The commit to build: the tip (checked for signature and downgrade) or the pin it names.

    tip: the verified branch tip that carries the spec; target: what to build
    (== tip.sha unless pinned); pin: the spec.revision that was resolved, "" if none;
    ref: a ref in the mirror that contains `target`, for
    `nix build git+file://MIRROR?ref=REF&rev=SHA`.
    """

    tip: Verified
    target: Verified
    pin: str
    ref: str
