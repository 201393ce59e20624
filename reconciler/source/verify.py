"""Commit signature verification against the machine's trust roots (never the repository's).

Owns checking the signature a commit carries:

- SSH signatures (git's `gpg.format = ssh`) with `ssh-keygen -Y find-principals`
  (who, per `allowed_signers_file`, owns the signing key) and `ssh-keygen -Y
  verify -n git` (does the signature match the commit, for that principal);
- OpenPGP signatures with `gpg --verify` in a throwaway GNUPGHOME, reading only
  `gpg_keyring` (every key in it is trusted: the file is the trust root).

With neither configured nothing is required. With either configured, an
unsigned commit, a bad signature or an untrusted signer raises TerminalError
(reason SignatureRefused) saying which. The rules are in
reconciler.core.source_policy; this module runs the tools.

Only the commit's own signature counts: a signed tag naming an unsigned commit
does not make that commit trusted.

Must not: read trust from the repository, use the user's ~/.gnupg or ~/.ssh.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import pygit2

from reconciler.common.config import SourceConfig
from reconciler.core.errors import TerminalError
from reconciler.core.source_policy import (
    METHOD_NONE,
    SignatureCheck,
    gpg_verdict,
    signature_kind,
    signature_precheck,
)
from reconciler.source.results import Verified

REASON = "SignatureRefused"
TOOL_TIMEOUT = 30.0


def verify_commit(repo: pygit2.Repository, sha: str, config: SourceConfig) -> Verified:
    """Check the signature of commit `sha` in `repo`; raise TerminalError when refused."""
    commit = repo.get(sha)
    if not isinstance(commit, pygit2.Commit):
        raise TerminalError(f"{sha} is not a commit in the mirror", reason="RevisionMissing")
    trust_ssh = config.allowed_signers_file is not None
    trust_openpgp = config.gpg_keyring is not None
    signature, payload = commit.gpg_signature
    kind = signature_kind(signature)
    refusal = signature_precheck(kind, trust_ssh, trust_openpgp)
    if refusal is not None:
        raise _refused(sha, refusal)
    if kind is None:  # nothing configured, nothing required
        return Verified(sha, None, METHOD_NONE)
    if kind == "ssh":
        assert config.allowed_signers_file is not None
        check = _ssh_check(config.allowed_signers_file, signature, payload)
    else:
        assert config.gpg_keyring is not None
        check = _gpg_check(config.gpg_keyring, signature, payload)
    if check.refusal is not None:
        raise _refused(sha, check.refusal)
    return Verified(sha, check.signer, kind)


def _refused(sha: str, why: str) -> TerminalError:
    return TerminalError(f"commit {sha} refused: {why}; nothing from it is built", reason=REASON)


def _run(argv: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(
            argv, input=stdin, capture_output=True, timeout=TOOL_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise TerminalError(
            f"cannot run {argv[0]} to verify a signature: {exc}", reason=REASON
        ) from None


def _ssh_check(allowed_signers: Path, signature: bytes, payload: bytes) -> SignatureCheck:
    if not allowed_signers.is_file():
        return SignatureCheck(f"allowed_signers_file {allowed_signers} does not exist")
    with tempfile.TemporaryDirectory(prefix="pullnix-sig-") as tmp:
        sigfile = Path(tmp) / "commit.sig"
        sigfile.write_bytes(signature)
        found = _run(
            ["ssh-keygen", "-Y", "find-principals", "-s", str(sigfile), "-f", str(allowed_signers)]
        )
        principals = [p for p in found.stdout.decode(errors="replace").split() if p]
        if found.returncode != 0 or not principals:
            return SignatureCheck(
                f"untrusted signer: the SSH signing key is not in {allowed_signers}"
            )
        for principal in principals:
            checked = _run(
                [
                    "ssh-keygen",
                    "-Y",
                    "verify",
                    "-n",
                    "git",
                    "-f",
                    str(allowed_signers),
                    "-I",
                    principal,
                    "-s",
                    str(sigfile),
                ],
                stdin=payload,
            )
            if checked.returncode == 0:
                return SignatureCheck(None, principal)
        detail = checked.stderr.decode(errors="replace").strip().splitlines()
        return SignatureCheck(
            f"bad signature: the SSH signature by {', '.join(principals)} "
            f"does not verify ({detail[-1] if detail else 'no detail'})"
        )


def _gpg_check(keyring: Path, signature: bytes, payload: bytes) -> SignatureCheck:
    if not keyring.is_file():
        return SignatureCheck(f"gpg_keyring {keyring} does not exist")
    with tempfile.TemporaryDirectory(prefix="pullnix-gpg-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        sigfile = Path(tmp) / "commit.sig"
        payload_file = Path(tmp) / "commit.payload"
        sigfile.write_bytes(signature)
        payload_file.write_bytes(payload)
        done = _run(
            [
                "gpg",
                "--batch",
                "--no-tty",
                "--no-autostart",
                "--homedir",
                str(home),
                "--no-default-keyring",
                "--keyring",
                str(keyring.resolve()),
                "--trust-model",
                "always",
                "--no-auto-key-retrieve",
                "--status-fd",
                "1",
                "--verify",
                str(sigfile),
                str(payload_file),
            ]
        )
    return gpg_verdict(done.stdout.decode(errors="replace"))
