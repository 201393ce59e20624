"""What a child process (or an exception) may leave in the journal, a status or a log line.

Owns the bounds on output pullnix did not write: a child that prints 20 MB on
one line, or an exception whose text is a 400-digit number, must cost the
long-lived processes a fixed amount of memory and leave a short message.

- `Tail`: the last `limit` bytes of a stream, fed chunk by chunk (never more).
- `CappedLog`: a log file that takes at most `cap` bytes of output, then one
  `[log truncated]` line (and pullnix's own short notes); a write that fails
  (a full disk) stops the log, never the caller.
- `punch_log(path, limit)`: while another process appends to a log (systemd, for
  an activation in its own unit), free the disk under its middle without moving
  anything; `cut_log(path, limit)` once the writer is done: the first `limit`
  bytes, a note, and the newest output.
- `last_lines(data, n)`: the same for the last n lines.
- `short_message(data)`: the last non-empty line of some output, decoded,
  control characters escaped, at most `MESSAGE_LIMIT` characters (the middle
  cut, the end kept: the end says why a command failed).

Standard library only (the helper imports it). Running the child is `child.py`'s.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

#: The most characters of child output or error text kept in one message.
MESSAGE_LIMIT = 400
#: The default tail kept of a child's output.
TAIL_LIMIT = 16 * 1024
#: The most bytes of output one of the helper's operation logs keeps (then a note).
LOG_LIMIT = 1024 * 1024
_BLOCK = 4096
_CUT = b"\n[log truncated]\n"
_PUNCH_HOLE = 0x02  # FALLOC_FL_PUNCH_HOLE
_KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE


class Tail:
    """The last `limit` bytes written to it."""

    def __init__(self, limit: int = TAIL_LIMIT) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self.total += len(chunk)
        self._buf += chunk[-self.limit :]
        if len(self._buf) > self.limit:
            del self._buf[: len(self._buf) - self.limit]

    @property
    def data(self) -> bytes:
        return bytes(self._buf)

    @property
    def dropped(self) -> int:
        """Bytes seen but no longer kept."""
        return self.total - len(self._buf)


def punch_log(path: Path, limit: int, keep: int = TAIL_LIMIT) -> int:
    """Free the disk blocks of `path` between its first `limit` and its last `keep` bytes
    (a hole: it reads as zeros, its size and every offset stay); return the bytes freed.

    Safe while another process appends to it: nothing moves and nothing written is
    lost but the middle, so a flood of output costs about `limit + keep` of disk
    however long it runs. A filesystem without holes, or a file that cannot be
    opened, is left as it is (0)."""
    try:
        with open(path, "r+b") as log:  # fallocate needs the file open for writing
            size = os.fstat(log.fileno()).st_size
            start = -(-limit // _BLOCK) * _BLOCK
            end = (size - keep) // _BLOCK * _BLOCK
            if end - start < _BLOCK * 16:
                return 0
            return end - start if _punch_hole(log.fileno(), start, end - start) else 0
    except OSError:
        return 0


def _punch_hole(fd: int, offset: int, length: int) -> bool:
    """fallocate(2) with FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE; False if it fails."""
    import ctypes  # only for a log past its limit: the helper does not load it otherwise

    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = getattr(libc, "fallocate64", None) or libc.fallocate
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    fallocate.restype = ctypes.c_int
    return int(fallocate(fd, _PUNCH_HOLE | _KEEP_SIZE, offset, length)) == 0


def cut_log(path: Path, limit: int, keep: int = TAIL_LIMIT) -> int:
    """Cut `path` back to its first `limit` bytes, then `[log truncated]` and its last `keep`
    bytes, when it is longer than that; return the bytes dropped (0: untouched).

    Only once nothing else writes to it (what is appended between the read and the
    cut is lost; `punch_log` is for while a writer runs). A file that cannot be read
    or written (gone, a full disk) is left as it is."""
    try:
        with open(path, "r+b") as log:
            size = log.seek(0, 2)
            if size <= limit + len(_CUT) + keep:
                return 0
            log.seek(size - keep)
            newest = log.read(keep)
            log.truncate(limit)
            log.seek(limit)
            log.write(_CUT + newest)
    except OSError:
        return 0
    return size - limit - len(newest)


class CappedLog:
    """Append to `path` (or an open binary file) up to `cap` bytes in all; then a note."""

    def __init__(self, sink: BinaryIO | None, cap: int) -> None:
        self.sink = sink
        self.cap = cap
        self.dropped = 0
        try:
            self.size = sink.tell() if sink is not None else 0
        except OSError:
            self.size = 0

    @classmethod
    def open(cls, path: Path, cap: int) -> CappedLog:
        """Open `path` for appending; a log that cannot be opened (full disk) is none."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            return cls(open(path, "ab"), cap)
        except OSError:
            return cls(None, cap)

    def write(self, data: bytes) -> None:
        """Append what fits under the cap; at the first byte that does not, a note."""
        room = self.cap - self.size
        part = data[: max(room, 0)]
        if part:
            self._put(part)
        if len(part) < len(data):
            if not self.dropped:
                self.note(b"\n[log truncated]\n")
            self.dropped += len(data) - len(part)

    def note(self, line: bytes) -> None:
        """A short line of pullnix's own (the command, its exit status), past the cap too."""
        self._put(line)

    def close(self) -> None:
        if self.sink is not None:
            try:
                self.sink.close()
            except OSError:
                self._lose()

    def _put(self, data: bytes) -> None:
        if self.sink is None:
            return
        try:
            self.sink.write(data)
            self.sink.flush()
        except OSError:  # a full disk: keep going without a log
            self._lose()
            return
        self.size += len(data)

    def _lose(self) -> None:
        sink, self.sink = self.sink, None
        if sink is not None:
            with contextlib.suppress(OSError):
                sink.close()


def short_message(data: bytes | str, limit: int = MESSAGE_LIMIT) -> str:
    """The last non-empty line of `data`, escaped and at most `limit` characters."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    lines = [line for line in text.splitlines() if line.strip()]
    return shorten(lines[-1].strip() if lines else "", limit)


def last_lines(data: bytes | str, count: int, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The last `count` non-empty lines of `data`, each escaped and at most `limit` long."""
    text = data.decode(errors="replace") if isinstance(data, bytes) else data
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return [shorten(line, limit) for line in lines[-count:]]


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """`text` with control characters escaped, cut in the middle to `limit` characters."""
    text = text[: limit * 4] + text[-limit * 4 :] if len(text) > limit * 8 else text
    escaped = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if len(escaped) <= limit:
        return escaped
    keep = limit - 5
    return f"{escaped[: keep // 2]} ... {escaped[-(keep - keep // 2) :]}"
