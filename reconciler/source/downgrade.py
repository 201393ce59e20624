"""Downgrade protection: which commits this machine has trusted, and does a tip descend.

Owns gathering the baselines a new tip must descend from, from records that
survive the loss of the agent's state dir:

- the agent's record (passed in): the last applied revision and the branch tip
  that carried it (they differ when the spec pinned `spec.revision`);
- what the helper recorded when it committed the running system
  (`committed_of(<[helper] state_dir>, readlink(current_system))`): the
  revision, and the source tip when the apply request carried one;
- the running system's `configuration-revision` file (NixOS's
  `system.configurationRevision` in the toplevel), when the helper has no record.

and asking the mirror whether the tip descends from each. A revision whose
carrying tip is unknown may be an off-branch pin, so when only such a baseline
fails, the tip's own pin is resolved (`pinned`, given by the caller) and a tip
pinning exactly that revision passes. The rules are in
reconciler.core.source_policy; a refusal raises TerminalError with reason
DowngradeRefused.

Must not: write any of these records, or fetch.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pygit2

from reconciler.common.records import committed_of
from reconciler.core.errors import TerminalError
from reconciler.core.source_policy import (
    Baseline,
    downgrade_baselines,
    downgrade_refusal,
    needs_pin,
    usable_baseline,
)

REASON = "DowngradeRefused"
REVISION_FILE = "configuration-revision"


def running_baseline(helper_state_dir: Path, current_system: Path) -> Baseline | None:
    """What the running system's records say was trusted, if anything records it."""
    try:
        target = os.readlink(current_system)
    except OSError:
        target = ""
    candidates = [t for t in (target, str(current_system.resolve())) if t]
    for store_path in dict.fromkeys(candidates):
        entry = committed_of(helper_state_dir, store_path)
        if entry is None:
            continue
        where = f"recorded by the helper for the running system {store_path}"
        if usable_baseline(entry.source_revision):
            return Baseline(
                entry.source_revision.strip().lower(),
                f"the branch tip that carried the running system, {where}",
            )
        if usable_baseline(entry.revision):
            return Baseline(entry.revision.strip().lower(), where, deployed=True)
    try:
        text = (current_system / REVISION_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if usable_baseline(text):
        return Baseline(text.lower(), f"{current_system}/{REVISION_FILE}", deployed=True)
    return None


def descends(repo: pygit2.Repository, tip: str, base: str) -> bool:
    """Is `tip` equal to `base` or one of its descendants? A base the mirror lacks is not."""
    if tip == base:
        return True
    try:
        return bool(repo.descendant_of(tip, base))
    except (KeyError, ValueError, pygit2.GitError):
        return False


def check_downgrade(
    repo: pygit2.Repository,
    tip: str,
    last_applied: str | None,
    running: Baseline | None,
    allow_downgrade: bool,
    *,
    applied_source: str | None = None,
    pinned: Callable[[], str | None] | None = None,
) -> None:
    """Raise TerminalError(DowngradeRefused) unless `tip` descends from every baseline
    (or pins, per `pinned()`, a deployed revision whose carrying tip is unknown)."""
    baselines = downgrade_baselines(last_applied, applied_source, running)
    checks = [(b, descends(repo, tip, b.revision)) for b in baselines]
    refusal = downgrade_refusal(tip, checks, allow_downgrade)
    if refusal is not None and pinned is not None and needs_pin(tip, checks):
        refusal = downgrade_refusal(tip, checks, allow_downgrade, pinned())
    if refusal is not None:
        raise TerminalError(refusal, reason=REASON)
