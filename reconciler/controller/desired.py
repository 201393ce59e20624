"""What the repository wants, read for one pass; and how old the followed commit is.

Owns the order of the source's steps in a pass and their spans (docs/tracing.md):
`source.fetch`, then `source.verify` (the tip's signature, its spec read, the
downgrade check), then `spec.load` (a spec that did not load is raised here,
after the downgrade check, so a force-push to older history is named first;
the pin followed). The tip's spec is read before the downgrade check because a
tip whose `spec.revision` pins exactly the running revision is no downgrade.
Also owns the last spec that loaded: a pass over an unchanged spec (most
passes) neither parses nor validates it again.

Must not: decide, write the record or the status (that is `reconcile.py`).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from reconciler.api import for_host, load_spec_text
from reconciler.api.document import MAX_BYTES as MAX_SPEC_BYTES
from reconciler.common.config import MachineConfig
from reconciler.core.errors import PullnixError, TerminalError
from reconciler.core.freshness import Freshness, freshness
from reconciler.core.model import NixOSDeployment
from reconciler.core.record import StoredRecord
from reconciler.source import AcceptedRevision, FetchResult, FileMissing, GitSource
from reconciler.telemetry import metrics
from reconciler.telemetry.tracing import step


@dataclass(frozen=True)
class Desired:
    fetch: FetchResult
    target: AcceptedRevision  # the source's verdict: the commit to deploy
    deployment: NixOSDeployment  # this host's desired state


class DesiredState:
    """The machine's source read the way a pass reads it."""

    def __init__(self, machine: MachineConfig, source: GitSource) -> None:
        self.machine = machine
        self.source = source
        self._spec: tuple[bytes, NixOSDeployment] | None = None  # (sha256 of the text, it)

    def read(self, stored: StoredRecord) -> Desired:
        """Fetch, verify the branch tip, load its desired state, refuse a downgrade, follow
        its pin; the first failure is raised (a PullnixError)."""
        fetch = self._fetch()
        spec_path = self.machine.source.spec_path
        with step("source.verify", {"vcs.ref.head.revision": fetch.tip_sha}) as span:
            tip = self.source.verify(fetch.tip_sha)
            span.set_attribute("pullnix.signer", tip.signer or "")
            loaded = self._try_load_spec(tip.sha)
            self.source.check_downgrade(
                tip.sha,
                stored.record.last_applied_revision,
                applied_source=stored.applied_source,
                pin=loaded.spec.revision if isinstance(loaded, NixOSDeployment) else "",
            )
        with step(
            "spec.load", {"pullnix.spec.path": spec_path, "vcs.ref.head.revision": tip.sha}
        ) as span:
            if not isinstance(loaded, NixOSDeployment):
                raise loaded
            target = self.source.accept_pin(tip, loaded.spec.revision)
            span.set_attribute("pullnix.spec.target", target.target.sha)
        return Desired(fetch, target, loaded)

    def freshness(self, tip: str | None) -> Freshness | None:
        """How old the followed commit is (the last tip fetched, also while the remote is
        unreachable); None before any fetch."""
        try:
            committed_at = self.source.committed_at(tip) if tip else None
        except TerminalError:  # not in the mirror (a lost state dir)
            committed_at = None
        if tip is None or committed_at is None:
            return None
        fresh = freshness(tip, committed_at, time.time(), self.machine.source.max_age)
        metrics.record_source_freshness(committed_at, fresh.stale)
        return fresh

    def _fetch(self) -> FetchResult:
        with step("source.fetch", {"vcs.ref.head.name": self.machine.source.branch}) as span:
            try:
                fetch = self.source.sync()
            except PullnixError:
                metrics.record_fetch_failure()
                raise
            span.set_attributes(
                {
                    "url.full": fetch.url,
                    "vcs.ref.head.revision": fetch.tip_sha,
                    "pullnix.fetch.fetched": fetch.fetched,
                    "pullnix.fetch.attempts": fetch.attempts,
                }
            )
        return fetch

    def _try_load_spec(self, sha: str) -> NixOSDeployment | PullnixError:
        """The desired state in commit `sha`, or the error that refused it (raised later)."""
        path = self.machine.source.spec_path
        try:
            text = self.source.read_file(sha, path, limit=MAX_SPEC_BYTES)
            return self._load_spec(text, f"{path}@{sha[:12]}")
        except FileMissing as exc:
            return FileMissing(exc.fact, "commit it as a regular file, or fix [source] spec_path")
        except PullnixError as exc:
            return exc

    def _load_spec(self, text: bytes, origin: str) -> NixOSDeployment:
        """The desired state for this host from `text`, parsed once per distinct text. Only
        a spec that loaded is kept: a bad one is checked, and refused, every time."""
        key = hashlib.sha256(text).digest()
        if self._spec is not None and self._spec[0] == key:
            return self._spec[1]
        deployment = for_host(load_spec_text(text, origin=origin), self.machine.host)
        self._spec = (key, deployment)
        return deployment
