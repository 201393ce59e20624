"""The source's policy decisions, as pure functions: signatures, downgrades, pins.

Owns the rules the git source layer applies to what it fetched:

- which signature a commit carries and whether this machine's trust roots can
  judge it (`signature_kind`, `signature_precheck`), and what gpg's status
  output means (`gpg_verdict`);
- whether a new tip is a downgrade (`downgrade_baselines`, `downgrade_refusal`).
  The rule is about the branch tip that CARRIED the desired state, not the
  commit a `spec.revision` pin pointed it at: a new tip must descend from the
  last applied source tip. A pinned commit may sit off the branch (a hotfix
  tag), so the revision a system was built from is only a baseline when the
  tip that carried it is not known, and then a tip that pins exactly that
  revision again is not a downgrade either (it asks for what runs);
- how a `spec.revision` pin is looked up (`pin_lookups`).

Must not: run git, gpg or ssh-keygen, read files, or decide anything from what
the repository says about its own trust. The shell gathers the facts (is A an
ancestor of B, what did gpg print) and these functions turn facts into verdicts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

SignatureKind = Literal["ssh", "openpgp", "x509"]
METHOD_NONE = "none"

_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ABBREV_RE = re.compile(r"[0-9a-f]{7,63}")
_ARMOR: tuple[tuple[bytes, SignatureKind], ...] = (
    (b"-----BEGIN SSH SIGNATURE-----", "ssh"),
    (b"-----BEGIN PGP SIGNATURE-----", "openpgp"),
    (b"-----BEGIN PGP MESSAGE-----", "openpgp"),
    (b"-----BEGIN SIGNED MESSAGE-----", "x509"),
)


def is_full_sha(text: str) -> bool:
    return _SHA_RE.fullmatch(text) is not None


def signature_kind(signature: bytes | None) -> SignatureKind | None:
    """Which kind of signature `signature` (as git stores it in the commit) is; None if absent.
    An unrecognised signature is reported as openpgp, git's default format."""
    if not signature:
        return None
    head = signature.lstrip()
    for armor, kind in _ARMOR:
        if head.startswith(armor):
            return kind
    return "openpgp"


def signature_precheck(
    kind: SignatureKind | None,
    trust_ssh: bool,
    trust_openpgp: bool,
) -> str | None:
    """None when the signature should go on to cryptographic verification (or when no trust
    root is configured, so none is required); otherwise why the commit is refused."""
    if not (trust_ssh or trust_openpgp):
        return None
    configured = " and ".join(
        name
        for name, on in (
            ("SSH (allowed_signers_file)", trust_ssh),
            ("OpenPGP (gpg_keyring)", trust_openpgp),
        )
        if on
    )
    if kind is None:
        return f"unsigned: this machine requires commits signed with {configured}"
    if (kind == "ssh" and trust_ssh) or (kind == "openpgp" and trust_openpgp):
        return None
    return f"signed with {kind}, but this machine trusts only {configured}"


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome of one cryptographic check; `refusal` is None when it passed."""

    refusal: str | None
    signer: str | None = None


def gpg_verdict(status: str) -> SignatureCheck:
    """Judge `gpg --status-fd` output: good only with GOODSIG and VALIDSIG, no BADSIG,
    an unexpired, unrevoked key from the configured keyring."""
    tokens: dict[str, list[str]] = {}
    for line in status.splitlines():
        if line.startswith("[GNUPG:] "):
            name, *args = line[len("[GNUPG:] ") :].split(" ")
            tokens.setdefault(name, args)
    if "BADSIG" in tokens:
        return SignatureCheck("bad signature: the OpenPGP signature does not match the commit")
    if "NO_PUBKEY" in tokens or ("ERRSIG" in tokens and "GOODSIG" not in tokens):
        key = (tokens.get("NO_PUBKEY") or tokens.get("ERRSIG") or ["?"])[0]
        return SignatureCheck(f"untrusted signer: OpenPGP key {key} is not in gpg_keyring")
    for bad, why in (
        ("EXPKEYSIG", "has expired"),
        ("REVKEYSIG", "is revoked"),
        ("EXPSIG", "signature has expired"),
    ):
        if bad in tokens:
            key = tokens[bad][0] if tokens[bad] else "?"
            return SignatureCheck(f"untrusted signer: OpenPGP key {key} {why}")
    if "GOODSIG" in tokens and "VALIDSIG" in tokens:
        fpr = tokens["VALIDSIG"][0] if tokens["VALIDSIG"] else "?"
        uid = " ".join(tokens["GOODSIG"][1:])
        return SignatureCheck(None, f"{uid} ({fpr})" if uid else fpr)
    return SignatureCheck("bad signature: gpg did not report a good, valid signature")


@dataclass(frozen=True)
class Baseline:
    """A commit this machine is known to have trusted, and where that is recorded.

    deployed: False for a branch tip that carried an applied desired state (a new tip
    must descend from it); True for a revision a system was built from when the tip
    that carried it is unknown: it may have been a pin, so a tip that pins it again
    is accepted too.
    """

    revision: str
    origin: str
    deployed: bool = False


def downgrade_baselines(
    applied_revision: str | None, applied_source: str | None, running: Baseline | None
) -> list[Baseline]:
    """The baselines a new tip is checked against.

    `applied_revision` and `applied_source` are the agent's record (what was built,
    and the branch tip that carried it); `running` is what the records that survive
    the agent's state dir say about the running system. A running revision equal to
    the applied one is covered by the applied source tip when that is known.
    """
    baselines: list[Baseline] = []
    revision = _clean(applied_revision)
    source = _clean(applied_source)
    if source is not None:
        where = f"lastAppliedRevision {revision[:12]}" if revision else "the applied revision"
        baselines.append(Baseline(source, f"the branch tip that carried {where}"))
    elif revision is not None:
        baselines.append(Baseline(revision, "lastAppliedRevision", deployed=True))
    if running is None or any(b.revision == running.revision for b in baselines):
        return baselines
    if running.deployed and source is not None and running.revision == revision:
        return baselines
    return [*baselines, running]


def downgrade_refusal(
    tip: str,
    checks: Sequence[tuple[Baseline, bool]],
    allow_downgrade: bool,
    pinned: str | None = None,
) -> str | None:
    """None when `tip` may be applied; else why it is a downgrade.

    `checks` pairs each known baseline with "tip is that baseline or descends from
    it". A baseline the mirror does not have cannot be an ancestor of the tip, so
    the shell reports it as False. `pinned` is the commit the tip's spec.revision
    names, if the shell looked: it satisfies a `deployed` baseline equal to it.
    With `allow_downgrade` nothing is refused.
    """
    if allow_downgrade:
        return None
    for baseline, descends in checks:
        if tip == baseline.revision or descends:
            continue
        if baseline.deployed and pinned == baseline.revision:
            continue
        return (
            f"commit {tip} does not descend from {baseline.revision} "
            f"({baseline.origin}): the branch was force-pushed to older or unrelated "
            "history. Push a commit on top of the applied one, pin an older revision "
            "deliberately with spec.revision, or set allow_downgrade = true in "
            "[source] of the machine config"
        )
    return None


def needs_pin(tip: str, checks: Sequence[tuple[Baseline, bool]]) -> bool:
    """Would knowing the tip's pin change the verdict (a failed `deployed` baseline)?"""
    return any(b.deployed and not ok and tip != b.revision for b, ok in checks)


def usable_baseline(revision: str | None) -> bool:
    """Only a full commit id can anchor the check (NixOS writes "dirty" and the like too)."""
    return revision is not None and is_full_sha(revision.strip().lower())


def _clean(revision: str | None) -> str | None:
    return revision.strip().lower() if usable_baseline(revision) and revision else None


def pin_lookups(pin: str) -> list[str]:
    """Where to look for `pin`, in order: a full commit id as is; else the tag of that
    name, then (for hex) an abbreviated commit id."""
    pin = pin.strip()
    if is_full_sha(pin.lower()):
        return [pin.lower()]
    lookups = [f"refs/tags/{pin}"]
    if _ABBREV_RE.fullmatch(pin.lower()):
        lookups.append(pin.lower())
    return lookups
