"""The helper's shell around the state machine: one operation at a time, journaled.

Owns the operation in progress: accepting it (or answering busy), driving it
through `machine.next_effect`/`machine.advance` on one worker thread, writing
the journal *before* each step is acted on, resuming a journaled operation
after a restart, taking confirmations from other threads, and the queued
self-upgrade (done only when idle).

Each effect is done by `effects.perform`; the worker passes every state and
step to the fault-injection test hook `crash.crash_point` (see `crash.py`).

After a commit, and before the operation is archived, the commit is
recorded and the old generations of the system profile are pruned as
`[system] keep_generations` says (see `committed`); the operation's message
says which were deleted.

No operation is ever left without an owner: a journal write that fails (a
full state dir) makes the operation go on in memory the way a restart would
go on from the journal (roll back from Activating or Verifying, finish
Committing or RollingBack), saying so in its message; a finished operation
that cannot be archived is answered from memory until it can be; a worker
that dies of anything else exits the helper, which systemd restarts into
recovery.

Must not: decide policy (that is `machine.py`) or speak the wire protocol.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from reconciler.common.answers import HelperStatus, operation_to_json
from reconciler.common.config import MachineConfig
from reconciler.common.output import shorten
from reconciler.common.protocol import (
    ApplyRequest,
    Busy,
    ConfirmRequest,
    ErrorCode,
    ProtocolError,
    RebootRequest,
    RollbackRequest,
)
from reconciler.common.records import revision_of as recorded_revision
from reconciler.helper import machine as m
from reconciler.helper import reboot as reboots
from reconciler.helper import system, transient
from reconciler.helper.committed import prune
from reconciler.helper.crash import PRUNE, crash_point
from reconciler.helper.effects import perform
from reconciler.helper.journal import Journal
from reconciler.helper.log import log

#: The exit status when the operation worker fails: systemd restarts the helper.
EXIT_WORKER_FAILED = 70
#: How many finished operations that could not be archived are kept in memory.
KEEP_UNARCHIVED = 10


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
        #: What the journal on disk holds for `_op` (the last write that succeeded).
        self._journaled: m.Operation | None = None
        #: The operation whose journal could not be written: it goes on in memory only.
        self._unjournaled: str | None = None
        #: Finished operations that could not be archived yet (a full disk): newest last.
        self._unarchived: list[m.Operation] = []
        self._upgrading = False
        self.upgrade_pending: str | None = None

    # -- starting and resuming ----------------------------------------------------------

    def resume(self) -> None:
        """Finish whatever the journal says was in progress, on the worker thread."""
        self.journal.sweep()
        reboots.settle(self.config, self.journal, self.clock())
        op = self.journal.load()
        if op is None:
            return
        log.warning("resuming operation %s found in %s in the journal", op.id, op.state)
        if not transient.may_outlive(op):
            return self._start_worker(initial_state=self._resume(op))
        with self._cond:  # its unit is waited for on the worker; the socket answers meanwhile
            self._op = self._journaled = op
        threading.Thread(target=self._resume, args=(op, True), daemon=True).start()

    def _resume(self, op: m.Operation, drive: bool = False) -> m.State:
        event = transient.event_after_restart(op, self.journal.log_path(op.id))
        with self._cond:  # a confirmation may have come while the unit was waited for
            self._journaled = self._journaled or op
            self._op = m.advance(self._op or op, event, self.clock())
            self._write_journal()
            state = self._op.state
        if drive:
            self._owned_drive(state)
        return state

    def apply(self, request: ApplyRequest, kind: str = "apply") -> dict[str, Any]:
        real = system.check_store_path(request.store_path, "bin/switch-to-configuration")
        transient_busy = transient.foreign_activation() if transient.available() else None
        if transient_busy:
            raise ProtocolError(ErrorCode.BUSY, transient_busy)
        request = replace(request, store_path=real)
        with self._cond:
            self._refuse_if_busy()
            self._archive_pending()
            now = self.clock()
            profile = system.profile_state(self.config.system.profile)
            previous = m.Previous(
                system.resolve(self.config.system.current_system), profile.path, profile.generation
            )
            op = m.begin(new_operation_id(now), kind, request, previous, now)
            self.journal.write(op)  # nothing is done unless this is on disk
            self._op = self._journaled = op
            self._unjournaled = None
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

    def reboot(self, request: RebootRequest) -> dict[str, Any]:
        """Reboot the machine (see `reboot`), never while an operation runs."""
        with self._cond:
            self._refuse_if_busy()
            now = self.clock()
            return reboots.reboot(self.config, request, new_operation_id(now), now)

    def _refuse_if_busy(self) -> None:
        if self._op is not None:
            raise Busy(operation_to_json(self._op))
        if reboots.is_rebooting(self.config):
            raise ProtocolError(ErrorCode.BUSY, "the machine is rebooting")
        if self._upgrading:
            raise ProtocolError(ErrorCode.BUSY, "the helper is upgrading itself")

    def _start_worker(self, initial_state: m.State | None) -> None:
        threading.Thread(
            target=self._owned_drive, args=(initial_state,), name="operation", daemon=True
        ).start()

    def _owned_drive(self, initial_state: m.State | None) -> None:
        """The worker must never die and leave an operation without an owner: on anything
        `_drive` does not handle, exit, so that systemd restarts the helper, which resumes
        the journaled operation (StartLimitIntervalSec=0: it always comes back)."""
        try:
            self._drive(initial_state)
        except BaseException:
            log.exception("the operation worker failed; exiting to recover from the journal")
            os._exit(EXIT_WORKER_FAILED)

    # -- the journal ----------------------------------------------------------------------

    def _write_journal(self) -> None:
        """Journal `_op` (the lock held). When the write fails (a full disk, an I/O error),
        the operation goes on as a restart would go on from what the journal holds
        (`machine.advance(..., Restarted())`): from Activating or Verifying it rolls
        back to the generation it can prove, the old one; Committing and RollingBack
        finish. It does so in memory, trying the journal again at each step, and says
        so in its message. A restart at any point recovers the same way from disk."""
        op = self._op
        assert op is not None
        try:
            self.journal.write(op)
        except OSError as exc:
            if self._unjournaled == op.id:
                log.error("operation %s: journal still not writable: %s", op.id, exc)
                return
            self._unjournaled = op.id
            base = self._journaled if self._journaled is not None else op
            recovered = m.advance(base, m.Restarted(), self.clock())
            doing = {
                m.State.ROLLING_BACK: "rolling back to the previous generation",
                m.State.ROLLED_BACK: "nothing was changed",
            }.get(recovered.state, f"finishing {recovered.state}")
            note = (
                f"the journal could not be written ({shorten(str(exc), 200)}) in "
                f"{op.state}: {doing} in memory, as a restart from {base.state} would"
            )
            log.error("operation %s: %s", op.id, note)
            last = replace(recovered.transitions[-1], message=note)
            self._op = replace(
                recovered, message=note, transitions=(*recovered.transitions[:-1], last)
            )
            return
        self._journaled = op

    def _archive_pending(self) -> None:
        """Archive what could not be archived before (the lock held)."""
        while self._unarchived:
            try:
                self.journal.finish(self._unarchived[0])
            except OSError:
                return
            self._unarchived.pop(0)

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
            logfile = self.journal.log_path(op.id)
            event = perform(self.config, op, effect, logfile, self.clock, self._await_confirm)
            if not isinstance(effect, m.Proceed):
                crash_point(effect.step)
            with self._cond:
                before = self._op
                assert before is not None
                if before.state is not op.state:  # recovered meanwhile (see _write_journal)
                    continue
                self._op = m.advance(before, event, self.clock())
                if m.needs_journal(before, self._op):
                    self._write_journal()
                self._cond.notify_all()
        if op.state is m.State.SUCCEEDED and m.commits(op.request):
            # Still ours: no apply or rollback can move the profile now.
            op = prune(self.config.system, op, self.journal.log_path(op.id))
            crash_point(PRUNE)
            with self._cond:
                self._op = op
        log_at = log.error if op.state is m.State.FAILED else log.info
        log_at("operation %s: %s: %s", op.id, op.state, op.message)
        with self._cond:
            try:
                self.journal.finish(op, between=lambda: crash_point(str(op.state)))
            except OSError as exc:  # answered from memory until it can be archived
                log.error("operation %s: cannot archive it: %s", op.id, exc)
                self._unarchived = [*self._unarchived, op][-KEEP_UNARCHIVED:]
            self._op = self._journaled = None
            self._cond.notify_all()
        self.upgrade_if_idle()

    def _await_confirm(self, op: m.Operation, effect: m.AwaitConfirm) -> None:
        """Wait until `op` is confirmed, over or recovered meanwhile, or its deadline passes."""
        with self._cond:
            self._cond.wait_for(
                lambda: (
                    self._op is None
                    or self._op.confirmed_at is not None
                    or self._op.state is not op.state
                ),
                timeout=effect.deadline - self.clock(),
            )

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
                    self._write_journal()
                self._cond.notify_all()
                return {"ok": True, "operationId": op.id, "state": str(self._op.state)}
        for done in (*self._unarchived, *self.journal.finished()):
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
            self._archive_pending()
            current = self._op
            unarchived = tuple(reversed(self._unarchived))
        found = None
        if operation_id is not None:
            found = (
                current
                if current is not None and current.id == operation_id
                else next((u for u in unarchived if u.id == operation_id), None)
                or self.journal.lookup(operation_id)
            )
            if found is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no operation {operation_id}")
        recent = (*unarchived, *self.journal.finished())
        return HelperStatus(current, recent, self.upgrade_pending, found)

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
