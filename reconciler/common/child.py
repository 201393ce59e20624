"""Running a child process whose output pullnix does not control, within fixed bounds.

Owns the one way a health check (helper), a gate, a hook or a Nix command
(agent; `nix/process.py` names Nix's failures) is run: argument list, no
shell, stdin closed, its own session (a timeout kills the whole group), both
pipes read as they fill, and only a bounded amount kept:
`tail_limit` bytes of the combined output (for the message), at most
`stdout_limit` bytes of stdout when the caller needs stdout itself (a report
to parse), and everything else streamed to an optional capped log and, line
by line (a line cut at `line_limit` bytes), to an optional callback (Nix's
log). A child printing a gigabyte on one line costs one read buffer, one cut
line and the tail.

Standard library only (the helper imports it). Must not: interpret the output.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from reconciler.common.output import TAIL_LIMIT, CappedLog, Tail, short_message

_CHUNK = 64 * 1024
#: The default longest line `on_stderr_line` gets whole; a longer one comes cut into pieces.
LINE_LIMIT = 4096


class ChildTimeout(Exception):
    """The child ran past its timeout and was killed (with its process group)."""


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: bytes  # at most `stdout_limit` bytes (the start); b"" unless asked for
    tail: bytes  # the last `tail_limit` bytes of stdout and stderr as they came
    stderr_tail: bytes  # the last `tail_limit` bytes of stderr alone
    dropped: int  # bytes of output neither kept in `tail` nor in `stdout`

    @property
    def message(self) -> str:
        """The last line of the output, short and escaped."""
        return short_message(self.tail)


def run_bounded(
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    log: CappedLog | None = None,
    tail_limit: int = TAIL_LIMIT,
    stdout_limit: int = 0,
    on_stderr_line: Callable[[bytes], None] | None = None,
    line_limit: int = LINE_LIMIT,
) -> Finished:
    """Run `argv` to its end; ChildTimeout after `timeout` seconds; OSError when it cannot
    start (FileNotFoundError, PermissionError). See `finish` for the rest."""
    proc = start(argv, env=env, cwd=cwd)
    return finish(
        proc,
        deadline=time.monotonic() + timeout,
        log=log,
        tail_limit=tail_limit,
        stdout_limit=stdout_limit,
        on_stderr_line=on_stderr_line,
        line_limit=line_limit,
    )


def start(
    argv: Sequence[str],
    *,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start `argv`: no shell, stdin closed, both pipes, a session of its own; OSError when
    it cannot (a caller that names a missing binary its own way catches it here alone)."""
    return subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )


def finish(
    proc: subprocess.Popen[bytes],
    *,
    deadline: float,
    log: CappedLog | None = None,
    tail_limit: int = TAIL_LIMIT,
    stdout_limit: int = 0,
    on_stderr_line: Callable[[bytes], None] | None = None,
    line_limit: int = LINE_LIMIT,
) -> Finished:
    """Read a `start`ed child's pipes as they fill until both close, then reap it;
    ChildTimeout at `deadline` (monotonic), the group killed, as on any exception (one
    `on_stderr_line` raised too). Each stderr line goes to `on_stderr_line` without its
    newline, as it comes; a line longer than `line_limit` bytes comes in pieces (one of
    them up to a read buffer longer), the last without a newline after the pipes close."""
    tail, err, out = Tail(tail_limit), Tail(tail_limit), bytearray()
    lines = None if on_stderr_line is None else Lines(on_stderr_line, line_limit)
    assert proc.stdout is not None
    assert proc.stderr is not None
    try:
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ, "out")
            sel.register(proc.stderr, selectors.EVENT_READ, "err")
            while sel.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ChildTimeout
                for key, _ in sel.select(remaining):
                    chunk = os.read(key.fd, _CHUNK)
                    if not chunk:
                        sel.unregister(key.fileobj)
                        continue
                    tail.feed(chunk)
                    if key.data == "err":
                        err.feed(chunk)
                        if lines is not None:
                            lines.feed(chunk)
                    elif len(out) < stdout_limit:
                        out += chunk[: stdout_limit - len(out)]
                    if log is not None:
                        log.write(chunk)
        if lines is not None:
            lines.close()
        try:
            code = proc.wait(timeout=max(deadline - time.monotonic(), 0.001))
        except subprocess.TimeoutExpired:
            raise ChildTimeout from None
    except BaseException:
        kill_group(proc)
        raise
    finally:
        proc.stdout.close()
        proc.stderr.close()
    return Finished(code, bytes(out), tail.data, err.data, max(tail.dropped - len(out), 0))


class Lines:
    """Bytes fed in chunks, passed on line by line (without the newline); a line longer
    than `limit` is passed on as it stands once it is, and the rest as another line."""

    def __init__(self, emit: Callable[[bytes], None], limit: int = LINE_LIMIT) -> None:
        self.emit = emit
        self.limit = limit
        self._partial = b""

    def feed(self, chunk: bytes) -> None:
        *whole, self._partial = (self._partial + chunk).split(b"\n")
        for line in whole:
            self.emit(line)
        if len(self._partial) > self.limit:  # a line with no end: cut it here
            partial, self._partial = self._partial, b""
            self.emit(partial)

    def close(self) -> None:
        """Pass on what is left of a last line without a newline."""
        if self._partial:
            partial, self._partial = self._partial, b""
            self.emit(partial)


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
