"""The helper's log: one line per event on stderr, which journald keeps.

Owns the helper's log format, `pullnix-helper[PID] LEVEL message`. A few lines
of its own rather than `logging`, because the helper's start time and idle
memory are budgeted and it needs no handlers, filters or configuration.

Must not: buffer (a line is written whole, at once) or raise (a broken stderr
never stops a rollback).
"""

from __future__ import annotations

import os
import sys


class Log:
    def _write(self, level: str, message: str, args: tuple[object, ...]) -> None:
        text = message % args if args else message
        line = f"pullnix-helper[{os.getpid()}] {level} {text}\n"
        try:
            sys.stderr.write(line)
            sys.stderr.flush()
        except (OSError, ValueError):
            pass

    def info(self, message: str, *args: object) -> None:
        self._write("INFO", message, args)

    def warning(self, message: str, *args: object) -> None:
        self._write("WARNING", message, args)

    def error(self, message: str, *args: object) -> None:
        self._write("ERROR", message, args)

    def exception(self, message: str, *args: object) -> None:
        """An error with the traceback of the exception being handled."""
        import traceback

        self._write("ERROR", message + "\n" + traceback.format_exc().rstrip(), args)


log = Log()
