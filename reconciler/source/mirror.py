"""GitSource: the bare mirror in `<state_dir>/mirror.git` and everything done through it.

Owns fetching the tracked branch (remote heads listed first, so an unchanged
remote costs one round trip and no pack), trying `[source] urls` in order,
retries, resolving `spec.revision` pins (fetching a tag or commit when the
mirror lacks it), handing its commits to reconciler.source.trees to read a
file or export the tree without a checkout, and the accept steps that combine signature verification
(reconciler.source.verify) and downgrade protection (reconciler.source.downgrade).

The mirror keeps the branch at `refs/heads/<branch>` (HEAD points there) and a
pinned revision that is not on the branch at `refs/pullnix/pinned`, so
`nix build git+file://MIRROR?ref=REF&rev=SHA` finds every commit it is given.
The mirror is a cache: a mirror that cannot be opened is moved aside and
fetched again.

Must not: run the `git` command, build, or decide what to deploy.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import pygit2

from reconciler.common.config import SourceConfig
from reconciler.common.urls import redact_url
from reconciler.core.errors import PullnixError, TerminalError, TransientError
from reconciler.core.source_policy import is_full_sha, pin_lookups
from reconciler.source.downgrade import check_downgrade, descends, running_baseline
from reconciler.source.ownership import MirrorLock
from reconciler.source.pins import PinRefused, valid_ref
from reconciler.source.results import AcceptedRevision, FetchResult, Verified
from reconciler.source.retry import RetryPolicy, run_with_retries
from reconciler.source.transport import (
    SourceCallbacks,
    classify,
    set_network_timeouts,
)
from reconciler.source.trees import READ_LIMIT, export_commit, read_blob
from reconciler.source.verify import verify_commit

log = logging.getLogger("pullnix.source")

MIRROR_DIR = "mirror.git"
PINNED_REF = "refs/pullnix/pinned"


class GitSource:
    """The git source of one machine: `sync()`, then accept, read and export commits."""

    def __init__(
        self,
        config: SourceConfig,
        state_dir: Path,
        helper_state_dir: Path,
        current_system: Path,
        retry: RetryPolicy | None = None,
    ) -> None:
        if not config.urls:
            raise TerminalError(
                "[source] urls is empty: list at least one git URL to pull "
                "from in the machine config",
                reason="SourceUnavailable",
            )
        self.config = config
        self.state_dir = state_dir
        self.helper_state_dir = helper_state_dir
        self.current_system = current_system
        self.retry = retry or RetryPolicy()
        self.ref = f"refs/heads/{config.branch}"
        self._repo: pygit2.Repository | None = None
        self._lock = MirrorLock(state_dir, state_dir / MIRROR_DIR)
        #: The refs the remote listed at the last sync: what a pinned tag names now.
        self._advertised: dict[str, str] | None = None
        set_network_timeouts(self.retry.connect_timeout, self.retry.io_timeout)

    @property
    def mirror_path(self) -> Path:
        return self.state_dir / MIRROR_DIR

    # ------------------------------------------------------------------ fetching

    def sync(self) -> FetchResult:
        """Bring the branch into the mirror from the first URL that serves; retry transient
        failures with backoff. Raises TransientError (no URL reachable) or TerminalError."""
        with self._lock.held():
            result, attempts = run_with_retries(self.retry, self._sync_once)
        return replace(result, attempts=attempts)

    def _sync_once(self) -> FetchResult:
        skipped: list[str] = []
        failures: list[PullnixError] = []
        for url in self.config.urls:
            try:
                return self._sync_url(url, tuple(skipped))
            except PullnixError as exc:
                skipped.append(f"{redact_url(url)}: {exc.message}")
                failures.append(exc)
        raise _combined(failures)

    def _sync_url(self, url: str, skipped: tuple[str, ...]) -> FetchResult:
        repo = self.repo()
        callbacks = SourceCallbacks(url, self.config)
        remote = repo.remotes.create_anonymous(url)
        try:
            heads = remote.list_heads(callbacks=callbacks)
        except Exception as exc:  # pygit2 raises many types; classify sorts them
            raise classify(exc, url) from None
        advertised = {str(h.name): str(h.oid) for h in heads}
        self._advertised = advertised  # pinned tags are re-resolved from it (resolve)
        tip = advertised.get(self.ref)
        if tip is None:
            branches = sorted(
                n.removeprefix("refs/heads/") for n in advertised if n.startswith("refs/heads/")
            )
            raise TerminalError(
                f"{redact_url(url)} has no branch {self.config.branch!r} (it has: "
                f"{', '.join(branches) or 'none'}); fix [source] branch",
                reason="BranchMissing",
            )
        if tip in repo:  # unchanged, or moved (back) to a commit the mirror already has
            local = repo.references.get(self.ref)
            if local is None or str(local.target) != tip:
                try:
                    repo.references.create(self.ref, tip, force=True)
                except Exception as exc:  # e.g. OSError "failed to lock file"
                    raise classify(exc, url) from None
            return FetchResult(
                redact_url(url), self.config.branch, self.ref, tip, fetched=False, skipped=skipped
            )
        try:
            stats = remote.fetch(
                [f"+{self.ref}:{self.ref}"],
                callbacks=callbacks,
                prune=pygit2.enums.FetchPrune.NO_PRUNE,
            )
        except Exception as exc:
            raise classify(exc, url) from None
        fetched_tip = str(repo.references[self.ref].target)
        return FetchResult(
            redact_url(url),
            self.config.branch,
            self.ref,
            fetched_tip,
            fetched=True,
            received_objects=stats.received_objects,
            received_bytes=stats.received_bytes,
            skipped=skipped,
        )

    def _fetch_refspecs(self, refspecs: list[str]) -> None:
        """Fetch `refspecs` from the first URL that serves them (with retries)."""

        def once() -> None:
            failures: list[PullnixError] = []
            for url in self.config.urls:
                callbacks = SourceCallbacks(url, self.config)
                try:
                    self.repo().remotes.create_anonymous(url).fetch(
                        refspecs, callbacks=callbacks, prune=pygit2.enums.FetchPrune.NO_PRUNE
                    )
                    return
                except Exception as exc:
                    failures.append(classify(exc, url))
            raise _combined(failures)

        with self._lock.held():
            run_with_retries(self.retry, once)

    # ------------------------------------------------------------------ the mirror

    def repo(self) -> pygit2.Repository:
        """The mirror, opened (or created, or recreated when unreadable) once."""
        if self._repo is None:
            path = self.mirror_path
            if path.exists():
                try:
                    self._repo = pygit2.Repository(str(path))
                except pygit2.GitError:
                    path.rename(path.with_name(f"{MIRROR_DIR}.broken-{int(time.time())}"))
            if self._repo is None:
                path.parent.mkdir(parents=True, exist_ok=True)
                self._repo = pygit2.init_repository(str(path), bare=True)
            self._repo.set_head(self.ref)
        return self._repo

    def _commit(self, sha: str) -> pygit2.Commit:
        try:
            obj = self.repo().get(sha)
        except (ValueError, pygit2.GitError):
            obj = None
        if obj is None:
            raise TerminalError(
                f"commit {sha} is not in the mirror {self.mirror_path}; sync() first",
                reason="RevisionMissing",
            )
        commit = obj.peel(pygit2.Commit)
        assert isinstance(commit, pygit2.Commit)
        return commit

    # ------------------------------------------------------------------ trust

    def verify(self, sha: str) -> Verified:
        """Check `sha`'s signature against the machine's trust roots (SignatureRefused)."""
        return verify_commit(self.repo(), str(self._commit(sha).id), self.config)

    def check_downgrade(
        self,
        sha: str,
        last_applied: str | None,
        *,
        applied_source: str | None = None,
        pin: str = "",
    ) -> None:
        """Refuse (DowngradeRefused) a `sha` that does not descend from what was trusted:
        `applied_source` (the tip that carried `last_applied`; else `last_applied`) and
        the records of the running system. `pin` is the spec.revision the tip carries;
        it is resolved only when a deployed revision of unknown carrier fails."""
        tip = str(self._commit(sha).id)
        check_downgrade(
            self.repo(),
            tip,
            last_applied,
            running_baseline(self.helper_state_dir, self.current_system),
            self.config.allow_downgrade,
            applied_source=applied_source,
            pinned=lambda: self._pinned(tip, pin),
        )

    def descends(self, sha: str, base: str) -> bool:
        """Is `sha` equal to `base` or one of its descendants (in the mirror)?"""
        return descends(self.repo(), str(self._commit(sha).id), base)

    def committed_at(self, sha: str) -> int:
        """When `sha` was committed (its committer time, seconds since the epoch)."""
        return int(self._commit(sha).commit_time)

    def _pinned(self, tip: str, pin: str) -> str | None:
        """The commit `tip`'s pin names; None when it has none or it cannot be resolved."""
        if not pin.strip():
            return None
        try:
            return self.resolve(tip, pin)
        except TerminalError:
            return None

    def accept_tip(
        self,
        tip_sha: str,
        last_applied: str | None,
        *,
        applied_source: str | None = None,
        pin: str = "",
    ) -> Verified:
        """The branch tip, once its signature and descent are checked; `pin` as for
        check_downgrade (the controller reads it from the verified tip in between)."""
        verified = self.verify(tip_sha)
        self.check_downgrade(verified.sha, last_applied, applied_source=applied_source, pin=pin)
        return verified

    def accept_pin(self, tip: Verified, pin: str) -> AcceptedRevision:
        """What to build given the spec's `revision` pin, read from the accepted `tip`.

        A pin may name an older commit: a deliberate rollback, allowed because the tip
        that carries it passed accept_tip. The pinned commit must be trusted too."""
        if not pin.strip():
            return AcceptedRevision(tip, tip, "", self.ref)
        target_sha = self.resolve(tip.sha, pin)
        target = tip if target_sha == tip.sha else self.verify(target_sha)
        return AcceptedRevision(tip, target, pin, self.nix_ref(target_sha))

    def resolve(self, tip_sha: str, pin: str) -> str:
        """The full commit id `pin` (a commit id, abbreviated or not, or a tag) names;
        `tip_sha` when there is no pin. Fetches a tag or commit the mirror lacks."""
        if not pin.strip():
            return str(self._commit(tip_sha).id)
        lookups = pin_lookups(pin)
        invalid = [lk for lk in lookups if lk.startswith("refs/") and not valid_ref(lk)]
        if invalid:
            raise PinRefused(pin)
        self._follow_tags([lk for lk in lookups if lk.startswith("refs/")])
        found = self._lookup(lookups)
        if found is None:
            refspecs = [
                f"+{lk}:{lk}" if lk.startswith("refs/") else f"+{lk}:{PINNED_REF}"
                for lk in lookups
                if lk.startswith("refs/") or is_full_sha(lk)
            ]
            for refspec in refspecs:
                try:
                    self._fetch_refspecs([refspec])
                except TerminalError:
                    continue
                found = self._lookup(lookups)
                if found is not None:
                    break
        if found is None:
            raise TerminalError(
                f"spec.revision {pin!r} names no commit or tag in "
                f"{', '.join(map(redact_url, self.config.urls))}; "
                "fix the pin in the spec",
                reason="RevisionMissing",
            )
        return found

    def _follow_tags(self, refs: list[str]) -> None:
        """Bring pinned tags in line with the remote's last advertisement: a tag that moved
        is fetched again, one the remote no longer has is dropped. Costs nothing when it
        did not move (the advertisement is the sync's own round trip)."""
        advertised = self._advertised
        if advertised is None:
            return
        repo = self.repo()
        for ref in refs:
            local = repo.references.get(ref)
            wanted = advertised.get(ref)
            if wanted is None and local is not None:
                with self._lock.held():
                    local.delete()
                log.warning("%s is gone from the remote; dropped from the mirror", ref)
            elif wanted is not None and (local is None or str(local.target) != wanted):
                if local is not None:
                    log.info("%s moved upstream to %s; fetching it", ref, wanted[:12])
                self._fetch_refspecs([f"+{ref}:{ref}"])

    def _lookup(self, lookups: list[str]) -> str | None:
        repo = self.repo()
        for lookup in lookups:
            try:
                if lookup.startswith("refs/"):
                    ref = repo.references.get(lookup)
                    obj = ref.peel(pygit2.Commit) if ref is not None else None
                else:
                    found = repo.get(lookup)
                    obj = found.peel(pygit2.Commit) if found is not None else None
            except (KeyError, ValueError, pygit2.GitError):
                obj = None
            if obj is not None:
                return str(obj.id)
        return None

    def nix_ref(self, sha: str) -> str:
        """A ref in the mirror whose history contains `sha` (for nix's `ref=`)."""
        repo = self.repo()
        branch = repo.references.get(self.ref)
        if branch is not None and (
            str(branch.target) == sha or repo.descendant_of(branch.target, sha)
        ):
            return self.ref
        with self._lock.held():
            repo.references.create(PINNED_REF, sha, force=True)
        return PINNED_REF

    # ------------------------------------------------------------------ reading trees

    def read_file(self, sha: str, path: str, *, limit: int = READ_LIMIT) -> bytes:
        """The content of `path` in commit `sha`, read from the mirror (no checkout); at most
        `limit` bytes (FileTooLarge), a regular file (FileMissing)."""
        return read_blob(self.repo(), self._commit(sha), path, limit)

    def export_tree(self, sha: str, dest: Path) -> Path:
        """Write the tree of commit `sha` to `dest` (which must not exist), atomically."""
        return export_commit(self.repo(), self._commit(sha), dest)


def _combined(failures: list[PullnixError]) -> PullnixError:
    """One error for "no URL served": transient if any URL may come back, else terminal."""
    if len(failures) == 1:
        return failures[0]
    message = "no URL served: " + "; ".join(f.message for f in failures)
    transient = [f for f in failures if isinstance(f, TransientError)]
    if transient:
        return TransientError(message, reason=transient[0].reason)
    return TerminalError(message, reason=failures[0].reason)
