"""The two kinds of failure, as types: transient (retry after a delay) and terminal (stop, say why).

Owns the error taxonomy every shell raises into, so the controller can tell a
blip from a verdict without string matching: a TransientError backs off and
retries; a TerminalError marks the object Stalled and is not retried until
something changes (a new commit, a new machine config, an explicit retry).
Each carries a CamelCase `reason` that becomes the condition's reason, and a
message a user can act on. Pure: no I/O.
"""

from __future__ import annotations


class PullnixError(Exception):
    """Base of every error pullnix reports in status; `reason` is the condition reason."""

    reason: str = "Error"
    #: The commit the failure belongs to, when it is tied to one (a build, a gate).
    revision: str | None = None

    def __init__(self, message: str, reason: str | None = None) -> None:
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
