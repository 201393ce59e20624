"""The post-deploy hook: a program of the spec's, run once per finished deployment.

Owns running `spec.hooks.postDeploy` (argv, no shell) with PULLNIX_REVISION,
PULLNIX_GENERATION, PULLNIX_RESULT and PULLNIX_STORE_PATH set. It runs when
the agent learns the helper's verdict, which may be in the next agent after
activation restarted this one, so a deploy that spans a restart still runs
its hook. A failing hook is logged and changes nothing.
"""

from __future__ import annotations

import logging
import os

from reconciler.common.child import ChildTimeout, run_bounded
from reconciler.core.history import HistoryEntry
from reconciler.core.model import Command

HOOK_TIMEOUT = 300.0
log = logging.getLogger("pullnix.hooks")


def run_post_deploy(hook: Command, entry: HistoryEntry) -> int | None:
    """Run the hook for `entry`; its exit code, or None when it could not run."""
    env = {
        **os.environ,
        "PULLNIX_REVISION": entry.revision,
        "PULLNIX_GENERATION": "" if entry.generation is None else str(entry.generation),
        "PULLNIX_RESULT": entry.result,
        "PULLNIX_STORE_PATH": entry.store_path,
    }
    try:
        done = run_bounded(list(hook.argv), env=env, timeout=HOOK_TIMEOUT)
    except (OSError, ChildTimeout) as exc:
        log.warning("postDeploy hook %s could not run: %s", hook.argv[0], exc or "timed out")
        return None
    if done.returncode != 0:
        log.warning("postDeploy hook %s exited %d: %s", hook.argv[0], done.returncode, done.message)
    return done.returncode
