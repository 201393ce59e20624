"""The status document a pass writes: `status.json`, the way `kubectl get -o json` shows one.

Owns the shape of the document `pullnix status --json` prints (`apiVersion`,
`kind`, `metadata`, `spec`, `status`): what a pass concluded, the conditions it
set, the history it took in, and for what it did not read this time (the
source after a failed fetch, the machine after a failed pass) what the last
pass wrote. Pure: values in, the document out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from reconciler.api.convert import deployment_to_data
from reconciler.controller.store import history_of
from reconciler.core.conditions import Condition
from reconciler.core.history import HistoryEntry, append_history
from reconciler.core.model import NixOSDeployment
from reconciler.core.policy import Verdict
from reconciler.nix.observe import SystemObservation
from reconciler.source import FetchResult

API_VERSION = "pullnix.dev/v1alpha1"


def status_document(
    host: str,
    previous: Mapping[str, Any],
    verdict: Verdict,
    conditions: Sequence[Condition],
    entries: Sequence[HistoryEntry],
    *,
    deployment: NixOSDeployment | None,
    fetch: FetchResult | None,
    system: SystemObservation | None,
    now: str,
    helper_config: str | None = None,
) -> dict[str, Any]:
    """The document after a pass; `previous` is the last one (or {})."""
    stored = verdict.stored
    history = history_of(previous)
    for entry in entries:
        history = append_history(history, entry)
    old: Mapping[str, Any] = previous.get("status", {})
    status: dict[str, Any] = {
        "observedGeneration": stored.generation,
        "conditions": [c.to_json() for c in conditions],
        "lastAppliedRevision": stored.record.last_applied_revision,
        "lastAttemptedRevision": verdict.attempted or old.get("lastAttemptedRevision"),
        "currentGeneration": system.current_generation if system else old.get("currentGeneration"),
        "currentSystem": system.current_system if system else old.get("currentSystem"),
        "source": _source(fetch) if fetch else old.get("source"),
        "suspended": stored.record.suspended,
        "helperConfigError": helper_config,
        "lastPassAt": now,
        "history": [h.to_json() for h in history],
    }
    name = (
        deployment.metadata.name if deployment else previous.get("metadata", {}).get("name", host)
    )
    return {
        "apiVersion": API_VERSION,
        "kind": "NixOSDeployment",
        "metadata": {
            "name": name,
            "generation": stored.generation,
            "annotations": {"pullnix.dev/host": host},
        },
        "spec": deployment_to_data(deployment)["spec"] if deployment else previous.get("spec", {}),
        "status": status,
    }


def _source(fetch: FetchResult) -> dict[str, Any]:
    return {
        "url": fetch.url,
        "branch": fetch.branch,
        "revision": fetch.tip_sha,
        "skipped": list(fetch.skipped),
    }
