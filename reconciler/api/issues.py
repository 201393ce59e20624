"""What is wrong with a desired-state file, and where: issues and the error that carries them.

Owns the one shape of a spec problem (file, line, column, field path,
message) and its two renderings: `FILE:LINE:COL: spec.path: message` for
people and a dict for `--json`. Lines and columns count from 1; a problem with
the whole file (too big, binary, empty) sits at 1:1 with an empty path.

Must not: read files or decide what is valid.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from reconciler.core.errors import TerminalError
from reconciler.core.model import FieldPath

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def format_path(path: FieldPath) -> str:
    """("spec", "healthChecks", 1, "http") -> 'spec.healthChecks[1].http'; odd keys quoted."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENTIFIER.match(part):
            out += f".{part}" if out else part
        else:
            escaped = part.replace("\\", "\\\\").replace('"', '\\"')
            out += f'["{escaped}"]'
    return out


@dataclass(frozen=True)
class Issue:
    file: str
    line: int
    col: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"

    def to_dict(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.line,
            "col": self.col,
            "path": self.path,
            "message": self.message,
        }


class SpecError(TerminalError):
    """The desired-state file is invalid; retrying will not help until a new commit fixes it."""

    reason = "InvalidSpec"

    def __init__(self, issues: Sequence[Issue]) -> None:
        self.issues: tuple[Issue, ...] = tuple(
            sorted(issues, key=lambda i: (i.file, i.line, i.col, i.path, i.message))
        )
        assert self.issues, "a SpecError without issues says nothing"
        first = str(self.issues[0])
        more = len(self.issues) - 1
        super().__init__(first + (f" (and {more} more problem{'s' * (more > 1)})" if more else ""))
