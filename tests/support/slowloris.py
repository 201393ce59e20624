"""Half-open HTTP connections (a slowloris), and what they cost the process that holds them.

Owns opening many connections that send the start of a request and never finish its
headers, finding out which of them the server has closed, and counting a process's
threads and open files from /proc. Used by the webhook's integration test and by the
benchmarks. Must not: talk to anything but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager

#: The start of a request that never ends: no blank line after the headers.
PARTIAL = b"POST /hooks/pullnix HTTP/1.1\r\nHost: 127.0.0.1\r\nX-GitHub-Event: push\r\n"


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def open_one(port: int, timeout: float = 30.0) -> socket.socket:
    """A connection that sent `PARTIAL` and will send nothing more. A server that
    refuses or sheds it at once may reset it while it sends; that counts as sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    with contextlib.suppress(ConnectionResetError, BrokenPipeError):
        sock.sendall(PARTIAL)
    return sock


def closed_by_peer(sock: socket.socket) -> bool:
    """True when the server closed (or reset) this connection; never blocks."""
    readable, _, _ = select.select([sock], [], [], 0)
    if not readable:
        return False
    try:
        return sock.recv(65536, socket.MSG_PEEK) == b"" or _drained_to_eof(sock)
    except OSError:  # ECONNRESET: closed with a reset
        return True


def _drained_to_eof(sock: socket.socket) -> bool:
    """The server wrote an answer (a 408 or 503) before closing: read it, then see EOF."""
    sock.setblocking(False)
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        sock.setblocking(True)


@contextmanager
def half_open(
    port: int, count: int, sample: Callable[[], None] = lambda: None
) -> Iterator[list[socket.socket]]:
    """`count` half-open connections, opened one after the other (`sample` runs after
    each), held until the block ends, then closed."""
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            socks.append(open_one(port))
            sample()
        yield socks
    finally:
        for sock in socks:
            sock.close()
