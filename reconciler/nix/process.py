"""Running one Nix command: argument list, timeout, Nix's log streamed line by line.

Owns the one way the driver starts `nix`, `nix-build` and `nix-env`, on
`common/child.py`'s runner: in its own process group (so a timeout kills the
builders too), stdout collected, stderr split into lines that go to a
callback and to the `reconciler.nix` logger as they arrive, the last 50 kept
for the error message. What Nix's log lines become (escapes stripped, cut,
capped per command) is this module's. A missing binary becomes NixMissing; a
timeout becomes NixTimeout. Must not: decide what a failure means (that is
`errors.classify`) or build command lines.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.common.child import ChildTimeout, finish, start
from reconciler.nix.errors import NixMissing, NixTimeout

log = logging.getLogger("reconciler.nix")

LineCallback = Callable[[str], None]
TAIL_LINES = 50
#: One line of Nix's log is cut at this many bytes (a line with no end is cut too).
LINE_LIMIT = 4096
#: How much of one command's log reaches the logger and the callback; the rest only the tail.
LOG_CAP = 4 * 1024 * 1024
#: The most of stdout kept (store paths, `nix eval --json`); more is a failure to read.
STDOUT_LIMIT = 16 * 1024 * 1024
# Every `nix` call names the features it needs, so no nix.conf change is required.
FEATURES = ("--extra-experimental-features", "nix-command flakes")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


@dataclass(frozen=True)
class NixRun:
    """What a finished command left: exit status, stdout, the last stderr lines, its duration."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    tail: tuple[str, ...]
    seconds: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


def run_nix(
    argv: Sequence[str],
    *,
    timeout: float,
    on_line: LineCallback | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> NixRun:
    """Run `argv` (argv[0] is looked up on PATH); stream stderr; never raise on a non-zero exit."""
    binary = _which(argv[0], env)
    started = time.monotonic()
    try:
        proc = start([binary, *argv[1:]], env=env, cwd=cwd)
    except FileNotFoundError:
        raise _missing(argv[0], env) from None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    logged = 0

    def emit(raw: bytes) -> None:
        nonlocal logged
        line = _ANSI.sub("", raw[:LINE_LIMIT].decode("utf-8", "replace")).rstrip("\r")
        if len(raw) > LINE_LIMIT:
            line += f" [line cut: {len(raw)} bytes]"
        tail.append(line)
        logged += len(line)
        if logged > LOG_CAP:
            if logged - len(line) <= LOG_CAP:
                log.warning(
                    "%s: more than %d bytes of log; only its tail is kept", argv[0], LOG_CAP
                )
            return
        log.info("%s", line, extra={"nix_command": argv[0]})
        if on_line is not None:
            on_line(line)

    try:
        done = finish(
            proc,
            deadline=started + timeout,
            stdout_limit=STDOUT_LIMIT,
            on_stderr_line=emit,
            line_limit=LINE_LIMIT,
        )
    except ChildTimeout:
        raise NixTimeout(
            f"{' '.join(argv[:2])} did not finish within {timeout:.0f}s and was stopped; "
            "it will be retried (raise the build timeout if it legitimately takes longer)"
        ) from None
    return NixRun(
        tuple(argv),
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        tuple(tail),
        time.monotonic() - started,
    )


def _which(name: str, env: Mapping[str, str] | None) -> str:
    path = (env if env is not None else os.environ).get("PATH", os.defpath)
    found = shutil.which(name, path=path)
    if found is None:
        raise _missing(name, env)
    return found


def _missing(name: str, env: Mapping[str, str] | None) -> NixMissing:
    path = (env if env is not None else os.environ).get("PATH", "")
    return NixMissing(
        f"{name!r} was not found on PATH ({path or 'empty'}); pullnix builds and manages systems "
        "with Nix: install it (NixOS has it; on Debian: apt install nix-bin) and make sure "
        "the agent's PATH includes it"
    )
