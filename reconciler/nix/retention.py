"""Delete old generations of the system profile, as the retention policy says.

Owns the shell around `reconciler.core.retention.plan_retention`: observe the
profile, plan, and run `nix-env -p PROFILE --delete-generations N M ...` for
the generations the plan names (never the current, booted, running or a
pinned one; the plan guarantees that). Deleting generations frees nothing by
itself; a later garbage collection does. Must not: choose generations
itself, or collect garbage.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection

from reconciler.core.retention import RetentionPlan, plan_retention
from reconciler.helper.config import SystemConfig
from reconciler.nix.errors import NixCommandFailed, first_error
from reconciler.nix.observe import observe_system
from reconciler.nix.process import run_nix

log = logging.getLogger("reconciler.nix")


def apply_retention(
    settings: SystemConfig,
    *,
    pinned: Collection[int] = (),
    timeout: float = 300.0,
    search_path: str | None = None,
) -> RetentionPlan:
    """Keep `settings.keep_generations` (plus protected ones); delete the rest; return the plan."""
    observed = observe_system(settings)
    plan = plan_retention(
        [(g.number, g.store_path) for g in observed.generations],
        settings.keep_generations,
        current=observed.current_generation,
        booted=observed.booted_system,
        running=observed.current_system,
        pinned=pinned,
    )
    if not plan.delete:
        return plan
    env = None if search_path is None else {**os.environ, "PATH": search_path}
    argv = ["nix-env", "-p", str(settings.profile), "--delete-generations",
            *map(str, plan.delete)]
    run = run_nix(argv, timeout=timeout, env=env)
    if not run.ok:
        raise NixCommandFailed(
            f"deleting generations {', '.join(map(str, plan.delete))} of {settings.profile} "
            f"failed: {first_error(run.tail)}")
    log.info("deleted generations %s of %s (kept %s)", list(plan.delete), settings.profile,
             list(plan.keep))
    return plan
