"""What can go wrong when pullnix asks Nix for something, as typed errors with condition reasons.

Owns the Nix driver's error types and the one classifier that reads Nix's
error output and says which one it was. Terminal errors wait for a new
commit; those of the commit itself (a missing attribute, an evaluation
error, a failed build, a result that is not a system) are CommitFailures,
remembered as BuildFailed for that commit; transient ones (a busy store, a timeout, a
commit the mirror does not hold yet) back off and retry. Must not: run
anything; the classifier is a pure function over the lines Nix printed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reconciler.core.errors import CommitFailure, TerminalError, TransientError

MAX_MESSAGE_LINES = 50


class NixMissing(TerminalError):
    reason = "NixMissing"


class FlakeAttributeMissing(CommitFailure):
    reason = "FlakeAttributeMissing"


class ConfigurationMissing(TerminalError):
    reason = "ConfigurationMissing"


class NixpkgsMissing(TerminalError):
    reason = "NixpkgsMissing"


class EvaluationError(CommitFailure):
    reason = "EvaluationError"


class BuildFailed(CommitFailure):
    """The build ran and failed; `log_tail` holds Nix's last lines (also in the message)."""

    reason = "BuildFailed"

    def __init__(self, message: str, log_tail: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.log_tail = tuple(log_tail)


class NotASystem(CommitFailure):
    reason = "NotASystem"


class NixCommandFailed(TerminalError):
    """A Nix command other than a build failed in a way pullnix does not recognise."""

    reason = "NixCommandFailed"


class NixStoreBusy(TransientError):
    reason = "NixStoreBusy"


class NixTimeout(TransientError):
    reason = "NixTimeout"


class RevisionNotInMirror(TransientError):
    reason = "RevisionNotInMirror"


# The first pattern that matches any line of Nix's output decides; order matters.
_PATTERNS: tuple[tuple[re.Pattern[str], type[Exception]], ...] = tuple(
    (re.compile(p), kind)
    for p, kind in (
        (r"does not provide attribute", FlakeAttributeMissing),
        (r"file 'nixpkgs(/[^']*)?' was not found in the Nix search path", NixpkgsMissing),
        (
            r"Cannot find Git revision|does not appear to be a git repository"
            r"|unknown revision or path not in the working tree",
            RevisionNotInMirror,
        ),
        (
            r"database is locked|SQLite database .* is busy|Resource temporarily unavailable"
            r"|unable to download|Could not resolve host|No space left on device",
            NixStoreBusy,
        ),
        (
            r"builder for '.*' failed|build of '.*' failed|dependencies of derivation .* failed"
            r"|[Cc]annot build '",
            BuildFailed,
        ),
    )
)


def classify(lines: Sequence[str]) -> type[Exception]:
    """Which error Nix's output describes; EvaluationError when nothing more specific matches."""
    for pattern, kind in _PATTERNS:
        if any(pattern.search(line) for line in lines):
            return kind
    return EvaluationError


def first_error(lines: Sequence[str]) -> str:
    """Nix's own one-line summary: the first line starting with `error:`, else the last line."""
    for line in lines:
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[-1].strip() if lines else "no output"


def with_tail(summary: str, lines: Sequence[str], hint: str = "") -> str:
    """`summary`, an optional hint, then as many of the last `lines` as fit in 50 lines in all."""
    head = [summary, *([hint] if hint else [])]
    room = MAX_MESSAGE_LINES - len(head) - 1
    tail = list(lines)[-room:] if room > 0 else []
    if not tail:
        return "\n".join(head)
    return "\n".join([*head, "last lines of the Nix log:", *tail])
