"""The git source: fetch the tracked branch into a bare mirror, decide whether to trust it.

Owns all git work of the agent (pygit2 only, never the `git` command): the
mirror, the transports and their credentials, signature verification against
the machine's trust roots, downgrade protection, pins, and reading files from
commits. Must not: build, read the spec's meaning, or import reconciler.nix.

Use (the controller, one reconcile)::

    source = GitSource(machine.source, machine.state_dir,
                       helper_state_dir=machine.helper.state_dir,
                       current_system=machine.system.current_system)
    fetched = source.sync()              # FetchResult: url that served, tip_sha, fetched
    tip = source.verify(fetched.tip_sha)                      # Verified, or TerminalError
    spec = load_spec_text(source.read_file(tip.sha, machine.source.spec_path), origin)
    source.check_downgrade(tip.sha, last_applied,             # or TerminalError
                           applied_source=tip_that_carried_it, pin=spec.revision)
    target = source.accept_pin(tip, spec.revision)            # AcceptedRevision
    # nix build git+file://{source.mirror_path}?ref={target.ref}&rev={target.target.sha}#...
    # classic configs: source.export_tree(target.target.sha, dest)

The parts, for callers that need them one by one:

- `sync() -> FetchResult` lists the remote's heads first; when the branch tip is
  already in the mirror it stops there (`fetched=False`: one round trip, no pack).
  URLs are tried in order; `url` says which served, `skipped` why the ones before
  did not. Transient failures are retried with exponential backoff and jitter
  (RetryPolicy); every connect and read (SSH too) is bounded by libgit2's timeouts.
- `verify(sha) -> Verified(sha, signer, method)`: SSH signatures against
  `allowed_signers_file`, OpenPGP against `gpg_keyring`. With either set, an
  unsigned commit, a bad signature or an unknown signer raises SignatureRefused.
- `check_downgrade(sha, last_applied, applied_source=, pin=)`: a tip that does
  not descend from the branch tip that carried the last applied revision
  (`applied_source`), or from what is recorded for the running system (the
  helper's generations.json, else the system's `configuration-revision`), raises
  DowngradeRefused unless `allow_downgrade`. A pinned revision is not itself a
  baseline when the tip that carried it is known; when only the revision is
  known, a tip whose own pin (`pin`, the spec.revision it carries, resolved
  only then) names exactly that revision passes. `accept_tip` is `verify` and
  `check_downgrade` in one call, for a caller that has the pin already.
- `resolve(tip_sha, pin) -> sha`: a commit id (full or abbreviated) or a tag,
  fetched if the mirror lacks it. `accept_pin` adds the signature rule for the
  pinned commit; a pin to an older commit is a deliberate rollback.
- `read_file(sha, path, limit=) -> bytes` (FileMissing: not a regular file;
  FileTooLarge: over `limit`, judged before it is unpacked), `export_tree(sha,
  dest)`, `mirror_path`, `nix_ref(sha)`.

Errors: reconciler.core.errors TransientError (reason SourceUnavailable) or
TerminalError with reason AuthenticationFailed, HostKeyRefused,
CertificateRefused, BranchMissing, SignatureRefused, DowngradeRefused,
RevisionMissing, FileMissing or ExportFailed; every message names the URL,
commit or file and says what to do.
"""

from reconciler.source.mirror import PINNED_REF, GitSource
from reconciler.source.results import AcceptedRevision, FetchResult, Verified
from reconciler.source.retry import RetryPolicy
from reconciler.source.trees import FileMissing, FileTooLarge

__all__ = [
    "PINNED_REF",
    "AcceptedRevision",
    "FetchResult",
    "FileMissing",
    "FileTooLarge",
    "GitSource",
    "RetryPolicy",
    "Verified",
]
