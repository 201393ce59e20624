"""The helper's shell around the state machine: one operation at a time, journaled.

Owns the operation in progress: accepting it (or answering busy), driving it
through `machine.next_effect`/`machine.advance` on one worker thread, writing
the journal *before* each step is acted on, resuming a journaled operation
after a restart, taking confirmations from other threads, and the queued
self-upgrade (done only when idle).

Test hook: `PULLNIX_HELPER_CRASH_AT=<name>` makes the helper SIGKILL itself,
once, at that point: a state name (`Pending`, `Activating`, `Verifying`,
`Committing`, `RollingBack`: as that state is entered, after it is journaled
if it has anything to do; `Succeeded`, `RolledBack`, `Failed`: after the
operation is archived, before the journal is cleared) or a step name
(`activate`, `check`, `confirm`, `set-profile`, `install-boot`, `record`,
`restore-profile`, `reactivate`, `restore-boot`: right after the step is
done, before its outcome is journaled; `prune`: after retention, before the
operation is archived). `CRASH_POINTS` lists every name (the states and
the effects' steps derived, the shell's own steps named), so the crash tests
can check they cover each one. Never set it in production.

After a commit, and before the operation is archived, the old generations
of the system profile are pruned as `[system] keep_generations` says (see
`retention`); the operation's message says which were deleted.

Must not: decide policy (that is `machine.py`) or speak the wire protocol.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import typing
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reconciler.common.answers import HelperStatus, operation_to_json
from reconciler.common.config import MachineConfig
from reconciler.common.protocol import (
    ApplyRequest,
    Busy,
    ConfirmRequest,
    ErrorCode,
    ProtocolError,
    RollbackRequest,
)
from reconciler.common.records import CommittedGeneration, append_committed, read_committed
from reconciler.common.records import revision_of as recorded_revision
from reconciler.helper import machine as m
from reconciler.helper import system
from reconciler.helper.journal import Journal
from reconciler.helper.log import log
from reconciler.helper.retention import plan_retention

CRASH_ENV = "PULLNIX_HELPER_CRASH_AT"
PRUNE = "prune"  # retention after a commit: a step of the shell, not of the machine
# Every name `_drive` passes to `crash_point`: each state (as entered, or as the end of
# an operation), each effect's step (`Proceed` acts on nothing, so it has none), and the
# shell's own steps.
CRASH_POINTS: tuple[str, ...] = (
    *(str(state) for state in m.State),
    *(effect.step for effect in typing.get_args(m.Effect) if effect is not m.Proceed),
    PRUNE,
)


def crash_point(name: str) -> None:
    """The fault-injection test hook (see the module docstring)."""
    if os.environ.get(CRASH_ENV) == name:
        log.warning("%s=%s: killing myself (test hook)", CRASH_ENV, name)
        os.kill(os.getpid(), signal.SIGKILL)


def new_operation_id(now: float) -> str:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
    return f"{stamp}{int(now * 1e6) % 1_000_000:06d}Z-{os.urandom(3).hex()}"


class Operator:
    def __init__(
        self,
        config: MachineConfig,
        journal: Journal,
        reexec: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.journal = journal
        self.clock = clock
        self._reexec = reexec
        self._cond = threading.Condition()
        self._op: m.Operation | None = None
        self._upgrading = False
        self.upgrade_pending: str | None = None

    # -- starting and resuming ----------------------------------------------------------

    def resume(self) -> None:
        """Finish whatever the journal says was in progress, on the worker thread."""
        self.journal.sweep()
        op = self.journal.load()
        if op is None:
            return
        log.warning("resuming operation %s found in %s in the journal", op.id, op.state)
        with self._cond:
            self._op = m.advance(op, m.Restarted(), self.clock())
            self.journal.write(self._op)
        self._start_worker(initial_state=self._op.state)

    def apply(self, request: ApplyRequest, kind: str = "apply") -> dict[str, Any]:
        real = system.check_store_path(request.store_path, "bin/switch-to-configuration")
        request = replace(request, store_path=real)
        with self._cond:
            self._refuse_if_busy()
            now = self.clock()
            profile = system.profile_state(self.config.system.profile)
            previous = m.Previous(
                system.resolve(self.config.system.current_system), profile.path, profile.generation
            )
            op = m.begin(new_operation_id(now), kind, request, previous, now)
            self.journal.write(op)
            self._op = op
        log.info(
            "operation %s: %s %s (revision %s, trial %s)",
            op.id,
            kind,
            request.store_path,
            request.revision or "-",
            request.trial,
        )
        self._start_worker(initial_state=None)
        return {"ok": True, "operationId": op.id, "state": str(op.state)}

    def rollback(self, request: RollbackRequest) -> dict[str, Any]:
        with self._cond:  # busy comes first: mid-operation the profile says nothing final
            self._refuse_if_busy()
        profile = self.config.system.profile
        current = system.profile_state(profile).generation
        older = [g for g in system.generations(profile) if current is None or g < current]
        if not older:
            raise ProtocolError(
                ErrorCode.NOTHING_TO_DO,
                f"{profile} has no generation before {current} to roll back to",
            )
        target = older[-1]
        path = system.generation_path(profile, target)
        if path is None:
            raise ProtocolError(ErrorCode.NOTHING_TO_DO, f"generation {target} is dangling")
        revision = recorded_revision(self.config.helper.state_dir, path) or ""
        req = ApplyRequest(
            store_path=path,
            revision=revision,
            action="switch",
            trial=False,
            traceparent=request.traceparent,
            generation=target,
        )
        return self.apply(req, kind="rollback")

    def _refuse_if_busy(self) -> None:
        if self._op is not None:
            raise Busy(operation_to_json(self._op))
        if self._upgrading:
            raise ProtocolError(ErrorCode.BUSY, "the helper is upgrading itself")

    def _start_worker(self, initial_state: m.State | None) -> None:
        threading.Thread(
            target=self._drive, args=(initial_state,), name="operation", daemon=True
        ).start()

    # -- the worker ---------------------------------------------------------------------

    def _drive(self, last_state: m.State | None) -> None:
        while True:
            with self._cond:
                op = self._op
                assert op is not None
                effect = m.next_effect(op)
            if effect is None:
                break
            if op.state is not last_state:
                crash_point(str(op.state))
                last_state = op.state
            event = self._perform(op, effect)
            if not isinstance(effect, m.Proceed):
                crash_point(effect.step)
            with self._cond:
                before = self._op
                assert before is not None
                self._op = m.advance(before, event, self.clock())
                if m.needs_journal(before, self._op):
                    self.journal.write(self._op)
                self._cond.notify_all()
        if op.state is m.State.SUCCEEDED and m.commits(op.request):
            op = self._prune(op)  # still ours: no apply or rollback can move the profile now
            crash_point(PRUNE)
            with self._cond:
                self._op = op
        log_at = log.error if op.state is m.State.FAILED else log.info
        log_at("operation %s: %s: %s", op.id, op.state, op.message)
        with self._cond:
            self.journal.finish(op, between=lambda: crash_point(str(op.state)))
            self._op = None
            self._cond.notify_all()
        self.upgrade_if_idle()

    def _perform(self, op: m.Operation, effect: m.Effect) -> m.Event:
        cfg, req = self.config, op.request
        logfile = self.journal.log_path(op.id)
        try:
            if isinstance(effect, m.Activate | m.Reactivate):
                system.switch(effect.store_path, effect.action, logfile, req.activation_timeout)
            elif isinstance(effect, m.InstallBoot | m.RestoreBoot):
                system.switch(effect.store_path, "boot", logfile, req.activation_timeout)
            elif isinstance(effect, m.RunCheck):
                # Imported on first use: an idle helper never pays for urllib, shlex, shutil.
                from reconciler.helper.health import run_check

                return m.Checked(run_check(effect.spec, cfg.source))
            elif isinstance(effect, m.AwaitConfirm):
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._op is None or self._op.confirmed_at is not None,
                        timeout=effect.deadline - self.clock(),
                    )
                return m.WaitOver()
            elif isinstance(effect, m.SetProfile | m.RestoreProfile):
                generation = system.set_profile(
                    cfg.system.profile, effect.store_path, effect.generation, logfile
                )
                return m.Done(generation=generation)
            elif isinstance(effect, m.RecordCommit):
                self._record(effect)
        except system.StepFailed as exc:
            return m.Broke(str(exc))
        except Exception as exc:  # the worker must outlive any bug
            log.exception("operation %s: %s", op.id, effect.step)
            return m.Broke(f"internal error in {effect.step}: {exc!r}")
        return m.Done()

    def _record(self, effect: m.RecordCommit) -> None:
        state_dir = self.config.helper.state_dir
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
                m.iso(self.clock()),
                source_revision=effect.source_revision,
            ),
        )

    def _prune(self, op: m.Operation) -> m.Operation:
        """Retention after a commit (see `retention`): the operation, its message noting it.

        Runs before the operation is archived, so a restart in between commits
        again (a no-op) and prunes again; a failure never undoes the commit."""
        cfg = self.config.system
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
            system.delete_generations(profile, plan.delete, self.journal.log_path(op.id))
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

    # -- requests from other threads ----------------------------------------------------

    def confirm(self, request: ConfirmRequest) -> dict[str, Any]:
        def matches(op_id: str, revision: str) -> bool:
            return op_id == request.operation_id or (
                request.revision is not None and revision == request.revision
            )

        with self._cond:
            op = self._op
            if op is not None and matches(op.id, op.request.revision):
                self._op = m.advance(op, m.Confirmed(), self.clock())
                if self._op is not op:
                    self.journal.write(self._op)
                self._cond.notify_all()
                return {"ok": True, "operationId": op.id, "state": str(self._op.state)}
        for done in self.journal.finished():
            if matches(done.id, done.request.revision):
                return {
                    "ok": True,
                    "operationId": done.id,
                    "state": str(done.state),
                    "message": "that operation is already over",
                }
        wanted = request.operation_id or f"revision {request.revision}"
        raise ProtocolError(ErrorCode.NOT_FOUND, f"no operation for {wanted}")

    def status(self, operation_id: str | None = None) -> HelperStatus:
        with self._cond:
            current = self._op
        found = None
        if operation_id is not None:
            found = (
                current
                if current is not None and current.id == operation_id
                else self.journal.lookup(operation_id)
            )
            if found is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no operation {operation_id}")
        return HelperStatus(current, self.journal.finished(), self.upgrade_pending, found)

    # -- self-upgrade -------------------------------------------------------------------

    def upgrade(self, store_path: str) -> dict[str, Any]:
        """Queue a move of the helper's profile; it happens (and we re-exec) when idle."""
        real = system.check_store_path(store_path, "bin/pullnix-helper")
        with self._cond:
            self.upgrade_pending = real
            if self._op is not None:
                return {
                    "ok": True,
                    "queued": True,
                    "message": f"operation {self._op.id} is in progress; the upgrade "
                    "waits until it is over",
                }
        return {"ok": True, "queued": False, "message": "upgrading now"}

    def upgrade_if_idle(self) -> None:
        """Move the helper profile and re-exec, if an upgrade waits and nothing runs."""
        with self._cond:
            path = self.upgrade_pending
            if path is None or self._op is not None or self._upgrading:
                return
            self._upgrading = True
            self.upgrade_pending = None
        logfile = self.config.helper.state_dir / "upgrade.log"
        try:
            system.run([f"{path}/bin/pullnix-helper", "--version"], logfile, 30)
            system.set_profile(self.config.helper.profile, path, None, logfile)
        except system.StepFailed as exc:
            log.error("upgrade to %s refused: %s", path, exc)
            with self._cond:
                self._upgrading = False
            return
        log.info("helper profile now %s; re-executing", path)
        try:
            self._reexec()
        except OSError as exc:  # only returns when exec failed
            log.error("cannot re-execute %s: %s; carrying on as before", path, exc)
            with self._cond:
                self._upgrading = False
