"""What a child process (or an exception) may leave in the journal, a status or a log line.

Owns the bounds on output pullnix did not write: a child that prints 20 MB on
one line, or an exception whose text is a 400-digit number, must cost the
long-lived processes a fixed amount of memory and leave a short message.

- `Tail`: the last `limit` bytes of a stream, fed chunk by chunk (never more).
- `CappedLog`: a log file that takes at most `cap` bytes of output, then one
  `[log truncated]` line (and pullnix's own short notes); a write that fails
  (a full disk) stops the log, never the caller.
- `last_lines(data, n)`: the same for the last n lines.
- `short_message(data)`: the last non-empty line of some output, decoded,
  control characters escaped, at most `MESSAGE_LIMIT` characters (the middle
  cut, the end kept: the end says why a command failed).

Standard library only (the helper imports it). Running the child is `child.py`'s.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import BinaryIO

#: The most characters of child output or error text kept in one message.
MESSAGE_LIMIT = 400
#: The default tail kept of a child's output.
TAIL_LIMIT = 16 * 1024


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
