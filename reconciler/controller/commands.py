"""The commands that change this machine's course: suspend, resume, retry and rollback.

Owns what each command does and answers, once, whether an agent runs or
not: the agent runs them for its local API (a change to the record then
waits for the pass in progress, and its loop is woken), and the command line
runs them itself when no agent answers (the record is changed under its
lock; the agent reads it at its next pass). A refusal is a `ProtocolError`
with the local API's code (`refused`, `timeout`), so both paths say the same.

Must not: run a pass, or decide anything about the machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from reconciler.common.config import MachineConfig
from reconciler.common.operation import State
from reconciler.common.protocol import new_traceparent
from reconciler.common.wire import ErrorCode, ProtocolError
from reconciler.controller.store import StateStore


class RecordChanger(Protocol):
    """Changes fields of the agent's record; True when the change waits for a pass."""

    def __call__(self, **changes: Any) -> bool: ...


def change_now(store: StateStore) -> RecordChanger:
    """Change the record at once, under its lock (no agent runs)."""

    def change(**changes: Any) -> bool:
        store.update_record(**changes)
        return False

    return change


@dataclass(frozen=True)
class Commands:
    machine: MachineConfig
    change_record: RecordChanger
    #: The agent's: after the helper was asked to roll back, and once it has, with the
    #: seconds left (its loop then runs the pass that folds the rollback in).
    started: Callable[[], None] = lambda: None
    finished: Callable[[float], None] = lambda _seconds: None

    def suspend(self) -> dict[str, Any]:
        later = self.change_record(suspended=True)
        return {"message": "suspended" + (" (after the pass in progress)" if later else "")}

    def resume(self) -> dict[str, Any]:
        later = self.change_record(suspended=False)
        return {"message": "resumed" + (" (after the pass in progress)" if later else "")}

    def retry(self) -> dict[str, Any]:
        doc = StateStore(self.machine.state_dir).load_status()
        revision = doc.get("status", {}).get("lastAttemptedRevision")
        if not revision:
            raise ProtocolError(
                ErrorCode.REFUSED, "nothing to retry: no revision has been attempted"
            )
        self.change_record(retry_revision=revision)
        return {"message": f"will retry {revision[:12]} at the next pass", "revision": revision}

    def rollback(self, wait: bool, timeout: float) -> dict[str, Any]:
        """Ask the helper to switch back to the previous generation; with `wait`, its
        verdict (exitCode 0 when rolled back)."""
        helper = HelperClient(self.machine.helper.socket)
        try:
            op_id = helper.rollback(new_traceparent())
        except HelperError as exc:
            raise ProtocolError(
                ErrorCode.REFUSED, f"the helper refused the rollback: {exc}"
            ) from None
        except HelperUnavailable as exc:
            raise ProtocolError(ErrorCode.REFUSED, f"the helper does not answer: {exc}") from None
        self.started()
        if not wait:
            return {"operationId": op_id, "queued": True}
        deadline = time.monotonic() + timeout
        try:
            found = helper.wait_for(op_id, timeout=timeout)
        except TimeoutError as exc:
            raise ProtocolError(ErrorCode.TIMEOUT, str(exc)) from None
        self.finished(max(1.0, deadline - time.monotonic()))
        return {
            "operationId": op_id,
            "result": str(found.state),
            "message": found.message,
            "exitCode": 0 if found.state == State.SUCCEEDED else 1,
        }
