"""A client of a root-owned Unix socket that is not root: for the SO_PEERCRED checks.

Owns one thing: fork a child that drops to uid/gid nobody, connects, sends one
message and hands the answer line back through a pipe. Must not be used where
the test process is not root (it needs setuid).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

NOBODY = 65534


def as_nobody(sock: Path, message: bytes) -> dict[str, Any]:
    """Fork a client that drops to uid/gid nobody before connecting; its answer."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            with socket.socket(socket.AF_UNIX) as conn:
                conn.settimeout(5)
                conn.connect(str(sock))
                with contextlib.suppress(BrokenPipeError):
                    conn.sendall(message)
                with conn.makefile("rb") as reader:
                    os.write(write_end, reader.readline())
        except BaseException as exc:
            os.write(write_end, json.dumps({"childError": repr(exc)}).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as reader:
        data = reader.read()
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(data) if data.strip() else {}
    return answer


def open_to_everyone(sock: Path) -> None:
    """Let uid nobody reach the socket file, so only the server's own peer check stands."""
    sock.parent.chmod(0o755)
    sock.chmod(0o666)
