"""Running a child process whose output pullnix does not control, within fixed bounds.

Owns the one way a health check (helper), a gate or a hook (agent) is run:
argument list, no shell, stdin closed, its own session (a timeout kills the
whole group), both pipes read as they fill, and only a bounded amount kept:
`tail_limit` bytes of the combined output (for the message), at most
`stdout_limit` bytes of stdout when the caller needs stdout itself (a report
to parse), and everything else streamed to an optional capped log. A child
printing a gigabyte on one line costs one read buffer and the tail.

Standard library only (the helper imports it). Must not: interpret the output.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reconciler.common.output import TAIL_LIMIT, CappedLog, Tail, short_message

_CHUNK = 64 * 1024


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
) -> Finished:
    """Run `argv` to its end; ChildTimeout after `timeout` seconds; OSError when it cannot
    start (FileNotFoundError, PermissionError)."""
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=None if env is None else dict(env),
        cwd=cwd,
        start_new_session=True,
    )
    tail, err, out = Tail(tail_limit), Tail(tail_limit), bytearray()
    deadline = time.monotonic() + timeout
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
                    elif len(out) < stdout_limit:
                        out += chunk[: stdout_limit - len(out)]
                    if log is not None:
                        log.write(chunk)
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


def kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child's process group and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
