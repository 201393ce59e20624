"""A pass that failed with an error no step foresaw (not a PullnixError): reported, never silent.

Owns what the status says when a pass dies of an OSError (a full disk, "Too
many open files", a stale lock), an OverflowError or a bug: `Ready=False`,
reason `InternalError`, the exception's type and a short, escaped message,
written over the last status.json so that no `Ready=True` outlives a failing
pass. When status.json cannot be written either, it says so in the log; the
agent's own status answers for it then (`core.vouch`).

Must not: retry, or decide anything (the loop backs off after an error).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

from reconciler.common.clock import utc_stamp
from reconciler.common.output import shorten
from reconciler.controller.store import StateStore, conditions_of
from reconciler.core.status import Outcome, apply_outcome

log = logging.getLogger("pullnix.reconcile")

REASON = "InternalError"


def internal_error(exc: BaseException) -> Outcome:
    """The outcome of a pass that raised `exc`."""
    return Outcome("Failing", REASON, f"the pass failed: {type(exc).__name__}: {shorten(str(exc))}")


def report_internal_error(store: StateStore, host: str, exc: BaseException) -> Outcome:
    """Log `exc`, write `Ready=False` into status.json if it can be written; the outcome."""
    outcome = internal_error(exc)
    log.error("the pass failed unexpectedly: %s", outcome.message, exc_info=exc)
    try:
        store.save_status(failed_status(store.load_status(), host, outcome, utc_stamp()))
    except OSError as write_error:
        log.error(
            "cannot write %s either (%s); `pullnix status` asks the running agent",
            store.status_path,
            shorten(str(write_error)),
        )
    return outcome


def failed_status(
    previous: dict[str, Any], host: str, outcome: Outcome, now: str
) -> dict[str, Any]:
    """`previous` (a status.json document, maybe empty) after a pass that ended in
    `outcome`: its conditions updated, the time of the pass, the rest kept."""
    doc = copy.deepcopy(previous)
    doc.setdefault("apiVersion", "pullnix.dev/v1alpha1")
    doc.setdefault("kind", "NixOSDeployment")
    doc.setdefault("metadata", {"name": host, "annotations": {"pullnix.dev/host": host}})
    doc.setdefault("spec", {})
    status = doc.setdefault("status", {})
    generation = status.get("observedGeneration")
    conditions = apply_outcome(conditions_of(previous), outcome, now, generation)
    status["conditions"] = [c.to_json() for c in conditions]
    status["lastPassAt"] = now
    return doc
