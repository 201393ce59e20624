"""The kinds of failure, as types: transient (retry after a delay) and terminal (stop, say why).

Owns the error taxonomy every shell raises into, so the controller can tell a
blip from a verdict without string matching: a TransientError backs off and
retries; a TerminalError marks the object Stalled and is not retried until
something changes (a new commit, a new machine config, an explicit retry). A
CommitFailure is the terminal failure that sticks to the commit it was tried
for (a failed build, a refusing gate): `decide` does not try that commit
again, and the type carries the failure reason it is remembered by. Every
error is one of the two kinds: a bare PullnixError cannot be raised. Each
carries a CamelCase `reason` that becomes the condition's reason, and a
message a user can act on. Pure: no I/O.
"""

from __future__ import annotations

from typing import ClassVar, Literal

#: Why a commit's prebuilt system was refused (see `core.lock`); each sticks to the commit.
PrebuiltRefusal = Literal[
    "InvalidSpec", "NotInLock", "LockFromAnotherHistory", "UntrustedSignature"
]
#: The reasons a CommitFailure is remembered by.
CommitFailureReason = Literal["BuildFailed", "GateRefused"] | PrebuiltRefusal
#: Why a commit is not tried again by itself (`AgentRecord.failed`).
FailureReason = Literal["RolledBack", "ActivationFailed"] | CommitFailureReason


class PullnixError(Exception):
    """Base of every error pullnix reports in status; `reason` is the condition reason.

    Abstract: raise a TransientError or a TerminalError (or a subclass)."""

    reason: str = "Error"
    #: The commit the failure belongs to, when it is tied to one (a build, a gate).
    revision: str | None = None

    def __init__(self, message: str, reason: str | None = None) -> None:
        if not isinstance(self, TransientError | TerminalError):
            raise TypeError(f"{type(self).__name__} is neither transient nor terminal")
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)


class TransientError(PullnixError):
    """Worth retrying with backoff: an unreachable remote, a timeout, a busy helper."""

    reason = "TransientError"


class TerminalError(PullnixError):
    """Retrying will not help until an input changes: a refused signature, an auth failure,
    a missing branch, an invalid spec, a failed build."""

    reason = "TerminalError"


class CommitFailure(TerminalError):
    """A terminal failure of one commit (`revision`, set by whoever tried it): it is
    remembered with `failure` as its reason, and that commit is not tried again until a
    `pullnix retry`."""

    reason = "BuildFailed"
    failure: ClassVar[CommitFailureReason] = "BuildFailed"
