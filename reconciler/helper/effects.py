"""Doing one effect of the helper's state machine on the machine, and saying how it went.

Owns the step behind each effect `machine.next_effect` names:
`switch-to-configuration` for Activate, Reactivate, InstallBoot and
RestoreBoot (its output in the operation's log); a health check for RunCheck;
moving the system profile for SetProfile and RestoreProfile; appending the
committed generation for RecordCommit; and the wait for the agent's
confirmation, which the caller does (it holds the lock confirmations come
through). What happened comes back as the event the machine advances on: a
failed step is `Broke` with what failed, and so is any bug, so the worker
outlives it.

Must not: journal, hold the operator's lock, or decide what comes next (that
is `machine.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from reconciler.common.config import MachineConfig
from reconciler.common.output import shorten
from reconciler.helper import machine as m
from reconciler.helper import system
from reconciler.helper.committed import record_commit
from reconciler.helper.log import log


def perform(
    config: MachineConfig,
    op: m.Operation,
    effect: m.Effect,
    logfile: Path,
    clock: Callable[[], float],
    await_confirm: Callable[[m.Operation, m.AwaitConfirm], None],
) -> m.Event:
    """Do `effect` of `op`; the event it ends in (`Done` unless it says more)."""
    req = op.request
    try:
        if isinstance(effect, m.Activate | m.Reactivate):
            system.switch(effect.store_path, effect.action, logfile, req.activation_timeout, op.id)
        elif isinstance(effect, m.InstallBoot | m.RestoreBoot):
            system.switch(effect.store_path, "boot", logfile, req.activation_timeout, op.id)
        elif isinstance(effect, m.RunCheck):
            # Imported on first use: an idle helper never pays for urllib, shlex, shutil.
            from reconciler.helper.health import run_check

            return m.Checked(run_check(effect.spec, config.source))
        elif isinstance(effect, m.AwaitConfirm):
            await_confirm(op, effect)
            return m.WaitOver()
        elif isinstance(effect, m.SetProfile | m.RestoreProfile):
            generation = system.set_profile(
                config.system.profile, effect.store_path, effect.generation, logfile
            )
            return m.Done(generation=generation)
        elif isinstance(effect, m.RecordCommit):
            record_commit(config.helper.state_dir, effect, m.iso(clock()))
    except system.StepFailed as exc:
        return m.Broke(str(exc))
    except Exception as exc:  # the worker must outlive any bug
        log.exception("operation %s: %s", op.id, effect.step)
        return m.Broke(f"internal error in {effect.step}: {shorten(repr(exc), 300)}")
    return m.Done()
