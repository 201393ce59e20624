"""The source's pure rules: signature kinds and prechecks, gpg status, downgrades, pins."""

from __future__ import annotations

import pytest

from reconciler.core.source_policy import (
    Baseline,
    downgrade_baselines,
    downgrade_refusal,
    gpg_verdict,
    is_full_sha,
    needs_pin,
    pin_lookups,
    signature_kind,
    signature_precheck,
    usable_baseline,
)

A = "a" * 40
B = "b" * 40
C = "c" * 40


@pytest.mark.parametrize(
    ("signature", "kind"),
    [
        (None, None),
        (b"", None),
        (b"-----BEGIN SSH SIGNATURE-----\nU1NIU0lH\n-----END SSH SIGNATURE-----\n", "ssh"),
        (b"-----BEGIN PGP SIGNATURE-----\n\niHUEABYK\n-----END PGP SIGNATURE-----\n", "openpgp"),
        (b"-----BEGIN SIGNED MESSAGE-----\nMIAG\n-----END SIGNED MESSAGE-----\n", "x509"),
        (b"something else", "openpgp"),
    ],
)
def test_signature_kind(signature: bytes | None, kind: str | None) -> None:
    assert signature_kind(signature) == kind


@pytest.mark.parametrize(
    ("kind", "ssh", "pgp", "refusal"),
    [
        (None, False, False, None),
        ("ssh", False, False, None),
        (None, True, False, "unsigned: this machine requires commits signed with SSH"),
        (None, False, True, "unsigned: this machine requires commits signed with OpenPGP"),
        ("ssh", True, False, None),
        ("openpgp", False, True, None),
        ("ssh", True, True, None),
        ("openpgp", True, False, "signed with openpgp, but this machine trusts only SSH"),
        ("ssh", False, True, "signed with ssh, but this machine trusts only OpenPGP"),
        ("x509", True, True, "signed with x509, but this machine trusts only SSH"),
    ],
)
def test_signature_precheck(
    kind: str | None,
    ssh: bool,
    pgp: bool,
    refusal: str | None,
) -> None:
    result = signature_precheck(kind, ssh, pgp)  # type: ignore[arg-type]
    if refusal is None:
        assert result is None
    else:
        assert result is not None
        assert result.startswith(refusal)


GOOD = (
    "[GNUPG:] NEWSIG\n[GNUPG:] KEY_CONSIDERED FPR 0\n"
    "[GNUPG:] GOODSIG 1234ABCD CI Signer <ci@example.org>\n"
    "[GNUPG:] VALIDSIG FPR 2026-01-01 1 0 4 0 22 8 01 FPR\n"
    "[GNUPG:] TRUST_ULTIMATE 0 pgp\n"
)


@pytest.mark.parametrize(
    ("status", "refusal", "signer"),
    [
        (GOOD, None, "CI Signer <ci@example.org> (FPR)"),
        ("[GNUPG:] NEWSIG\n[GNUPG:] BADSIG 1234ABCD CI Signer\n", "bad signature", None),
        (
            "[GNUPG:] ERRSIG 1234ABCD 22 8 00 1 9\n[GNUPG:] NO_PUBKEY 1234ABCD\n",
            "untrusted signer: OpenPGP key 1234ABCD",
            None,
        ),
        ("[GNUPG:] EXPKEYSIG 1234ABCD CI\n[GNUPG:] VALIDSIG FPR\n", "untrusted signer", None),
        (
            "[GNUPG:] REVKEYSIG 1234ABCD CI\n",
            "untrusted signer: OpenPGP key 1234ABCD is revoked",
            None,
        ),
        ("[GNUPG:] GOODSIG 1234ABCD CI\n", "bad signature: gpg did not report", None),
        ("", "bad signature", None),
        ("gpg: Good signature from someone\n", "bad signature", None),
    ],
)
def test_gpg_verdict(status: str, refusal: str | None, signer: str | None) -> None:
    check = gpg_verdict(status)
    assert check.signer == signer
    if refusal is None:
        assert check.refusal is None
    else:
        assert check.refusal is not None
        assert check.refusal.startswith(refusal)


@pytest.mark.parametrize(
    ("checks", "allow", "refused"),
    [
        ([], False, False),
        ([(Baseline(A, "lastAppliedRevision"), True)], False, False),
        ([(Baseline(B, "lastAppliedRevision"), True)], False, False),
        ([(Baseline(B, "lastAppliedRevision"), False)], False, True),
        ([(Baseline(B, "lastAppliedRevision"), False)], True, False),
        ([(Baseline(A, "lastAppliedRevision"), False)], False, False),  # the tip itself
        ([(Baseline(B, "last"), True), (Baseline("c" * 40, "running"), False)], False, True),
    ],
)
def test_downgrade_refusal(checks: list[tuple[Baseline, bool]], allow: bool, refused: bool) -> None:
    assert (downgrade_refusal(A, checks, allow) is not None) == refused


def test_downgrade_refusal_names_the_baseline_and_the_ways_out() -> None:
    message = downgrade_refusal(A, [(Baseline(B, "helper record"), False)], False)
    assert message is not None
    for part in (A, B, "helper record", "spec.revision", "allow_downgrade"):
        assert part in message


def test_a_pin_satisfies_only_a_deployed_baseline_equal_to_it() -> None:
    deployed = [(Baseline(B, "lastAppliedRevision", deployed=True), False)]
    source = [(Baseline(B, "the branch tip that carried it"), False)]
    assert downgrade_refusal(A, deployed, False, pinned=B) is None
    assert downgrade_refusal(A, deployed, False, pinned=C) is not None
    assert downgrade_refusal(A, deployed, False) is not None
    assert downgrade_refusal(A, source, False, pinned=B) is not None  # a tip must descend
    assert needs_pin(A, deployed)
    assert not needs_pin(A, source)
    assert not needs_pin(A, [(Baseline(B, "x", deployed=True), True)])


@pytest.mark.parametrize(
    ("revision", "source", "running", "expected"),
    [
        (None, None, None, []),
        # the applied source tip is the baseline, not the pinned revision it deployed
        (B, A, None, [(A, False)]),
        # a record kept before sources were: the revision, which a pin may explain
        (B, None, None, [(B, True)]),
        # the running system's revision is the applied one, whose carrying tip is known
        (B, A, Baseline(B, "helper", deployed=True), [(A, False)]),
        # ... but the agent's record is lost: the helper's record stands alone
        (None, None, Baseline(B, "helper", deployed=True), [(B, True)]),
        # the running system is something else (changed by hand, or another agent's)
        (B, A, Baseline(C, "helper", deployed=True), [(A, False), (C, True)]),
        # the helper recorded the source tip itself
        (None, None, Baseline(A, "helper"), [(A, False)]),
        (B, A, Baseline(A, "helper"), [(A, False)]),
        (" " + B.upper(), "dirty", None, [(B, True)]),
    ],
)
def test_downgrade_baselines(
    revision: str | None,
    source: str | None,
    running: Baseline | None,
    expected: list[tuple[str, bool]],
) -> None:
    got = downgrade_baselines(revision, source, running)
    assert [(b.revision, b.deployed) for b in got] == expected


@pytest.mark.parametrize(
    ("revision", "usable"),
    [
        (A, True),
        (A.upper(), True),
        (f" {A}\n", True),
        ("dirty", False),
        ("", False),
        (None, False),
        (A[:12], False),
        ("f" * 64, True),
    ],
)
def test_usable_baseline(revision: str | None, usable: bool) -> None:
    assert usable_baseline(revision) == usable


@pytest.mark.parametrize(
    ("pin", "lookups"),
    [
        (A, [A]),
        (A.upper(), [A]),
        ("v1.0", ["refs/tags/v1.0"]),
        ("deadbeef", ["refs/tags/deadbeef", "deadbeef"]),
        (" v2 ", ["refs/tags/v2"]),
        ("abc", ["refs/tags/abc"]),
    ],
)
def test_pin_lookups(pin: str, lookups: list[str]) -> None:
    assert pin_lookups(pin) == lookups


def test_is_full_sha() -> None:
    assert is_full_sha(A)
    assert not is_full_sha(A[:-1])
    assert not is_full_sha("g" * 40)
