"""The values of a helper operation: its states, what it found and touched, effects, events.

Owns the vocabulary that `machine.py` computes with, `journal.py` stores and
`operator.py` performs: plain frozen values and nothing else. Pure: no I/O, no
clock (`iso` formats a time it is given).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from enum import StrEnum

from reconciler.common.protocol import ApplyRequest, CheckSpec


class State(StrEnum):
    PENDING = "Pending"
    ACTIVATING = "Activating"
    VERIFYING = "Verifying"
    COMMITTING = "Committing"
    SUCCEEDED = "Succeeded"
    ROLLING_BACK = "RollingBack"
    ROLLED_BACK = "RolledBack"
    FAILED = "Failed"


TERMINAL = frozenset({State.SUCCEEDED, State.ROLLED_BACK, State.FAILED})


@dataclass(frozen=True)
class Previous:
    """What the machine was running before the operation began."""

    current_system: str | None
    profile_path: str | None
    profile_generation: int | None


@dataclass(frozen=True)
class Touched:
    """What the operation may have changed; set *before* the step that changes it."""

    running: bool = False
    boot: bool = False
    profile: bool = False


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    ok: bool
    message: str
    attempts: int
    started_at: str
    finished_at: str


@dataclass(frozen=True)
class Phase:
    """One timed step, for the agent to rebuild trace spans from."""

    name: str
    started_at: str
    finished_at: str | None = None
    ok: bool | None = None
    message: str = ""


@dataclass(frozen=True)
class Transition:
    state: State
    at: str
    message: str = ""


@dataclass(frozen=True)
class Operation:
    id: str
    kind: str  # apply | rollback
    request: ApplyRequest
    previous: Previous
    state: State
    created_at: str
    touched: Touched = Touched()
    done: tuple[str, ...] = ()  # steps finished in the current state
    checks: tuple[CheckResult, ...] = ()
    confirmed_at: str | None = None
    confirm_deadline: float | None = None
    generation: int | None = None  # the profile generation it committed
    transitions: tuple[Transition, ...] = ()
    phases: tuple[Phase, ...] = ()
    message: str = ""
    finished_at: str | None = None

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


# Effects: what the shell must do next. `step` names it in phases and crash hooks.
@dataclass(frozen=True)
class Proceed:
    step: str = "proceed"


@dataclass(frozen=True)
class Activate:
    store_path: str
    action: str
    step: str = "activate"


@dataclass(frozen=True)
class RunCheck:
    index: int
    spec: CheckSpec
    step: str = "check"


@dataclass(frozen=True)
class AwaitConfirm:
    deadline: float
    step: str = "confirm"


@dataclass(frozen=True)
class SetProfile:
    store_path: str
    generation: int | None
    step: str = "set-profile"


@dataclass(frozen=True)
class InstallBoot:
    store_path: str
    step: str = "install-boot"


@dataclass(frozen=True)
class RecordCommit:
    store_path: str
    revision: str
    generation: int | None
    source_revision: str = ""  # the branch tip that carried `revision`, when the agent said
    step: str = "record"


@dataclass(frozen=True)
class RestoreProfile:
    store_path: str
    generation: int | None
    step: str = "restore-profile"


@dataclass(frozen=True)
class Reactivate:
    store_path: str
    action: str
    step: str = "reactivate"


@dataclass(frozen=True)
class RestoreBoot:
    store_path: str
    step: str = "restore-boot"


Effect = (
    Proceed
    | Activate
    | RunCheck
    | AwaitConfirm
    | SetProfile
    | InstallBoot
    | RecordCommit
    | RestoreProfile
    | Reactivate
    | RestoreBoot
)


# Events: what happened.
@dataclass(frozen=True)
class Done:
    """The effect succeeded; `generation` is the profile generation after SetProfile."""

    generation: int | None = None
    message: str = ""


@dataclass(frozen=True)
class Broke:
    message: str


@dataclass(frozen=True)
class Checked:
    result: CheckResult


@dataclass(frozen=True)
class Confirmed:
    pass


@dataclass(frozen=True)
class WaitOver:
    """The confirm wait ended (confirmed, or the deadline passed)."""


@dataclass(frozen=True)
class Restarted:
    """The helper started and found this operation in its journal."""


Event = Done | Broke | Checked | Confirmed | WaitOver | Restarted


def iso(now: float) -> str:
    """RFC 3339 UTC with microseconds, e.g. 2026-11-25T18:31:39.566851Z."""
    seconds = int(now)
    micros = round((now - seconds) * 1e6)
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"
