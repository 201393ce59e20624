"""The source's policy decisions, as pure functions: signatures, downgrades, pins.

Owns the rules the git source layer applies to what it fetched:

- which signature a commit carries and whether this machine's trust roots can
  judge it (`signature_kind`, `signature_precheck`), and what gpg's status
  output means (`gpg_verdict`);
- whether a new tip is a downgrade: it must descend from every revision this
  machine is known to have applied (`downgrade_refusal`);
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


def signature_precheck(kind: SignatureKind | None, trust_ssh: bool, trust_openpgp: bool,
                       ) -> str | None:
    """None when the signature should go on to cryptographic verification (or when no trust
    root is configured, so none is required); otherwise why the commit is refused."""
    if not (trust_ssh or trust_openpgp):
        return None
    configured = " and ".join(
        name for name, on in (("SSH (allowed_signers_file)", trust_ssh),
                              ("OpenPGP (gpg_keyring)", trust_openpgp)) if on)
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
            name, *args = line[len("[GNUPG:] "):].split(" ")
            tokens.setdefault(name, args)
    if "BADSIG" in tokens:
        return SignatureCheck("bad signature: the OpenPGP signature does not match the commit")
    if "NO_PUBKEY" in tokens or ("ERRSIG" in tokens and "GOODSIG" not in tokens):
        key = (tokens.get("NO_PUBKEY") or tokens.get("ERRSIG") or ["?"])[0]
        return SignatureCheck(f"untrusted signer: OpenPGP key {key} is not in gpg_keyring")
    for bad, why in (("EXPKEYSIG", "has expired"), ("REVKEYSIG", "is revoked"),
                     ("EXPSIG", "signature has expired")):
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
    """A revision this machine is known to have applied, and where that is recorded."""

    revision: str
    origin: str


def downgrade_refusal(tip: str, checks: Sequence[tuple[Baseline, bool]],
                      allow_downgrade: bool) -> str | None:
    """None when `tip` may be applied; else why it is a downgrade.

    `checks` pairs each known baseline with "tip is that baseline or descends from
    it". A baseline the mirror does not have cannot be an ancestor of the tip, so
    the shell reports it as False. With `allow_downgrade` nothing is refused.
    """
    if allow_downgrade:
        return None
    for baseline, descends in checks:
        if tip != baseline.revision and not descends:
            return (f"commit {tip} does not descend from {baseline.revision} "
                    f"({baseline.origin}): the branch was force-pushed to older or unrelated "
                    "history. Push a commit on top of the applied one, pin an older revision "
                    "deliberately with spec.revision, or set allow_downgrade = true in "
                    "[source] of the machine config")
    return None


def usable_baseline(revision: str | None) -> bool:
    """Only a full commit id can anchor the check (NixOS writes "dirty" and the like too)."""
    return revision is not None and is_full_sha(revision.strip().lower())


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
