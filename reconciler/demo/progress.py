"""How the demo talks: one line per event, and on a terminal a live line while it waits.

Owns the demo's output. Every event is a line with the seconds since the act
began and who speaks (`git`, `agent`, `helper`, `demo`). On a terminal the
speakers are coloured and a spinner line under the events says what is
awaited and for how long, redrawn in place; when stdout is not a terminal
(CI, a pipe, a log file) there is no colour and no spinner, only the lines.

Must not: decide anything, or read anything but the clock.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

_COLOURS = {"git": "35", "agent": "36", "helper": "33", "demo": "1", "ok": "32", "bad": "31"}
_SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"


class Progress:
    def __init__(self, out: TextIO = sys.stdout, live: bool | None = None) -> None:
        self.out = out
        self.live = out.isatty() if live is None else live
        self.started = time.monotonic()
        self._waiting = ""
        self._frame = 0

    def act(self, title: str) -> None:
        """A new act of the story: a heading, and the clock starts again."""
        self._clear()
        self.started = time.monotonic()
        self.out.write(f"\n{self._paint('demo', '== ' + title)}\n")
        self.out.flush()

    def event(self, who: str, text: str, mood: str = "") -> None:
        self._clear()
        elapsed = time.monotonic() - self.started
        speaker = self._paint(who, f"{who:<6}")
        self.out.write(f"[{elapsed:5.1f}s] {speaker} {self._paint(mood, text) if mood else text}\n")
        self.out.flush()
        self._draw()

    def say(self, text: str = "") -> None:
        """A plain line (tables, explanations)."""
        self._clear()
        self.out.write(text + "\n")
        self.out.flush()

    def waiting(self, what: str) -> None:
        """What the demo waits for now; on a terminal, redraw the live line."""
        self._waiting = what
        self._frame += 1
        self._draw()

    def done_waiting(self) -> None:
        self._clear()
        self._waiting = ""

    def _draw(self) -> None:
        if not self.live or not self._waiting:
            return
        elapsed = time.monotonic() - self.started
        spin = _SPINNER[self._frame % len(_SPINNER)]
        self.out.write(f"\r\x1b[2K{spin} {self._waiting} ({elapsed:.1f}s)")
        self.out.flush()

    def _clear(self) -> None:
        if self.live and self._waiting:
            self.out.write("\r\x1b[2K")

    def _paint(self, key: str, text: str) -> str:
        colour = _COLOURS.get(key)
        return f"\x1b[{colour}m{text}\x1b[0m" if self.live and colour else text
