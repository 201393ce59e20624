"""After a commit: the record of committed generations, and retention of old ones.

Owns the two steps of the helper's shell that follow a commit and are not the
state machine's business: appending the committed generation to the record
that downgrade protection reads (`records.py`; idempotent, so a restart may
redo it), and deleting old generations of the system profile as
`[system] keep_generations` says (`retention.py` plans it; a failure is noted
in the operation's message and never undoes the commit).

Must not: journal, or decide what happens next (that is `machine.py`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from reconciler.common.config import SystemConfig
from reconciler.common.records import CommittedGeneration, append_committed, read_committed
from reconciler.helper import machine as m
from reconciler.helper import system
from reconciler.helper.log import log
from reconciler.helper.retention import plan_retention


def record_commit(state_dir: Path, effect: m.RecordCommit, now: str) -> None:
    """Append the committed generation, unless it is already the last one recorded."""
    committed = read_committed(state_dir)
    if committed and (
        committed[-1].generation,
        committed[-1].store_path,
        committed[-1].revision,
    ) == (effect.generation, effect.store_path, effect.revision):
        return  # already recorded before a restart
    append_committed(
        state_dir,
        CommittedGeneration(
            effect.generation,
            effect.store_path,
            effect.revision,
            now,
            source_revision=effect.source_revision,
        ),
    )


def prune(cfg: SystemConfig, op: m.Operation, logfile: Path) -> m.Operation:
    """Retention after a commit (see `retention`): the operation, its message noting it.

    Runs before the operation is archived, so a restart in between commits
    again (a no-op) and prunes again; a failure never undoes the commit."""
    profile = cfg.profile
    numbers = system.generations(profile)
    plan = plan_retention(
        [(n, path) for n in numbers if (path := system.generation_path(profile, n))],
        cfg.keep_generations,
        current=system.profile_state(profile).generation,
        booted=system.resolve(cfg.booted_system),
        running=system.resolve(cfg.current_system),
        pinned=() if op.generation is None else (op.generation,),
    )
    if not plan.delete:
        return op
    shown = ", ".join(map(str, plan.delete))
    try:
        system.delete_generations(profile, plan.delete, logfile)
    except system.StepFailed as exc:
        log.error("operation %s: deleting old generations %s failed: %s", op.id, shown, exc)
        note = f"deleting old generations {shown} failed: {exc}"
    else:
        kept = ", ".join(f"{n} ({why})" for n, why in plan.protected)
        note = f"deleted old generations {shown} (keep_generations = {cfg.keep_generations}" + (
            f"; also kept {kept})" if kept else ")"
        )
        log.info("operation %s: %s", op.id, note)
    return replace(op, message=f"{op.message}; {note}")
