"""Downgrade protection: which revisions this machine has applied, and does a tip descend.

Owns gathering the baselines a new tip must descend from, from records that
survive the loss of the agent's state dir:

- the last applied revision (the agent's own status, passed in);
- the revision the helper recorded when it committed the running system
  (`revision_of(<[helper] state_dir>, readlink(current_system))`);
- the running system's `configuration-revision` file (NixOS's
  `system.configurationRevision` in the toplevel), when the helper has no record.

and asking the mirror whether the tip descends from each. The rule itself is
reconciler.core.source_policy.downgrade_refusal; a refusal raises TerminalError
with reason DowngradeRefused.

Must not: write any of these records, or fetch.
"""

from __future__ import annotations

import os
from pathlib import Path

import pygit2

from reconciler.core.errors import TerminalError
from reconciler.core.source_policy import Baseline, downgrade_refusal, usable_baseline
from reconciler.helper.records import revision_of

REASON = "DowngradeRefused"
REVISION_FILE = "configuration-revision"


def running_baseline(helper_state_dir: Path, current_system: Path) -> Baseline | None:
    """The revision the running system was built from, if anything records it."""
    try:
        target = os.readlink(current_system)
    except OSError:
        target = ""
    candidates = [t for t in (target, str(current_system.resolve())) if t]
    for store_path in dict.fromkeys(candidates):
        revision = revision_of(helper_state_dir, store_path)
        if usable_baseline(revision):
            assert revision is not None
            return Baseline(revision.strip().lower(),
                            f"recorded by the helper for the running system {store_path}")
    try:
        text = (current_system / REVISION_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if usable_baseline(text):
        return Baseline(text.lower(), f"{current_system}/{REVISION_FILE}")
    return None


def descends(repo: pygit2.Repository, tip: str, base: str) -> bool:
    """Is `tip` equal to `base` or one of its descendants? A base the mirror lacks is not."""
    if tip == base:
        return True
    try:
        return bool(repo.descendant_of(tip, base))
    except (KeyError, ValueError, pygit2.GitError):
        return False


def check_downgrade(repo: pygit2.Repository, tip: str, last_applied: str | None,
                    running: Baseline | None, allow_downgrade: bool) -> None:
    """Raise TerminalError(DowngradeRefused) unless `tip` descends from every baseline."""
    baselines: list[Baseline] = []
    if usable_baseline(last_applied):
        assert last_applied is not None
        baselines.append(Baseline(last_applied.strip().lower(), "lastAppliedRevision"))
    if running is not None and all(b.revision != running.revision for b in baselines):
        baselines.append(running)
    checks = [(b, descends(repo, tip, b.revision)) for b in baselines]
    refusal = downgrade_refusal(tip, checks, allow_downgrade)
    if refusal is not None:
        raise TerminalError(refusal, reason=REASON)
