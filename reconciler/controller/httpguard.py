"""A threaded HTTP server that stays bounded: few connections, deadlines, readable refusals.

Owns `BoundedHTTPServer`, http.server's `ThreadingHTTPServer` held to the policy of
`core.connections`, and `BoundedHandler`, the request handler that goes with it:

- at most `max_connections` connections (so handler threads and their file
  descriptors) at once; at the cap the oldest one still reading its request is
  shed (a best-effort 503) to let the newcomer in, or the newcomer is turned away
  when every connection is at work;
- a deadline from accept: the whole request, headers and body, must arrive
  within `request_timeout`, or the connection is cut (a best-effort 408), checked
  by the accept loop itself every `poll_interval` (every read also times out, later,
  as a backstop);
- a refusal the client can read (`BoundedHandler.refuse`): the answer is sent,
  our side half-closed, and what the client is still sending is read and dropped,
  at most `drain_limit` bytes for at most `linger_timeout`, so a client in the
  middle of a big body reads the status instead of a reset (EPIPE);
- an accept that fails for lack of file descriptors backs off instead of spinning.

Only the accept loop closes what it never handed over; a handler's socket is closed
by its own thread, and the accept loop only shuts it down, both under one lock, so a
descriptor is never cut after it was reused. Must not: know what the requests mean
(the webhook's handler does).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import itertools
import logging
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from reconciler.core.connections import Conn, Phase, Refuse, Shed, admit, overdue

log = logging.getLogger("pullnix.http")

_TIMEOUT = b"HTTP/1.0 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
_BUSY = b"HTTP/1.0 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


@dataclass
class _Open:
    conn: Conn
    done: threading.Event
    cut: bool = False


class BoundedHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64  # the listen backlog; accepting is cheap, the cap is below
    max_connections = 16
    request_timeout = 10.0
    linger_timeout = 5.0
    drain_limit = 32 * 1024 * 1024  # above GitHub's 25 MB cap on a webhook's payload
    shed_wait = 2.0  # how long the accept loop waits for a shed connection's thread to end
    accept_backoff = 0.1

    def __init__(self, address: tuple[str, int], handler: type[BoundedHandler]) -> None:
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        self._lock = threading.Lock()
        self._open: dict[socket.socket, _Open] = {}
        self._keys = itertools.count()
        self._warned = 0.0
        self.guard_counts = {"shed": 0, "turnedAway": 0, "timedOut": 0}
        super().__init__(address, handler)

    @property
    def open_connections(self) -> int:
        with self._lock:
            return len(self._open)

    # -- the accept loop's side ---------------------------------------------------------

    def get_request(self) -> tuple[Any, Any]:
        try:
            return super().get_request()
        except OSError as exc:
            if exc.errno in (errno.EMFILE, errno.ENFILE):
                now = time.monotonic()
                if now - self._warned > 60:
                    self._warned = now
                    log.warning("cannot accept a connection: %s (backing off)", exc.strerror)
                time.sleep(self.accept_backoff)  # the listener stays readable: do not spin
            raise

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._lock:
            verdict = admit((o.conn for o in self._open.values()), self.max_connections)
        if isinstance(verdict, Shed) and not self._shed(verdict.key):
            verdict = Refuse()
        if isinstance(verdict, Refuse):
            self.guard_counts["turnedAway"] += 1
            _send_quietly(request, _BUSY)
            self.shutdown_request(request)
            return
        now = time.monotonic()
        conn = Conn(next(self._keys), now, Phase.READING, now + self.request_timeout)
        with self._lock:
            self._open[request] = _Open(conn, threading.Event())
        super().process_request(request, client_address)  # on failure: shutdown_request

    def service_actions(self) -> None:
        """Every turn of the accept loop: cut the connections past their deadline."""
        super().service_actions()
        now = time.monotonic()
        with self._lock:
            live = {o.conn.key: (s, o) for s, o in self._open.items() if not o.cut}
            for key in overdue((o.conn for _, o in live.values()), now):
                self.guard_counts["timedOut"] += 1
                self._cut(*live[key], _TIMEOUT)

    def _shed(self, key: int) -> bool:
        """Cut the connection `key` for a newcomer; True once its thread has ended."""
        with self._lock:
            found = [(s, o) for s, o in self._open.items() if o.conn.key == key]
            if not found:
                return True
            sock, entry = found[0]
            if not entry.cut:  # one cut at its deadline is already on its way out
                self.guard_counts["shed"] += 1
                self._cut(sock, entry, _BUSY)
        return entry.done.wait(self.shed_wait)

    def _cut(self, sock: socket.socket, entry: _Open, answer: bytes) -> None:
        """With the lock held, so the socket cannot be closed (and its descriptor reused
        by a new connection) under our feet."""
        entry.cut = True
        if entry.conn.phase is Phase.READING:  # nothing was answered yet
            _send_quietly(sock, answer)
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)  # its thread wakes up and closes it

    # -- the handler threads' side ------------------------------------------------------

    def shutdown_request(self, request: Any) -> None:
        """Close a connection (its handler's thread does, when done); under the lock."""
        with self._lock:
            entry = self._open.pop(request, None)
            super().shutdown_request(request)
        if entry is not None:
            entry.done.set()

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: ARG002 (socketserver's signature)
        """A connection that went away or was cut is routine; anything else is logged."""
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("connection from %s ended: %s", client_address[0], exc)
        else:
            log.error("error in a request from %s", client_address[0], exc_info=True)

    def was_cut(self, request: socket.socket) -> bool:
        with self._lock:
            entry = self._open.get(request)
            return entry is not None and entry.cut

    def enter(self, request: socket.socket, phase: Phase) -> None:
        """The connection moves on to `phase`, with a new deadline for it."""
        timeout = self.linger_timeout if phase is Phase.LINGERING else self.request_timeout
        with self._lock:
            entry = self._open.get(request)
            if entry is not None:
                entry.conn = dataclasses.replace(
                    entry.conn, phase=phase, deadline=time.monotonic() + timeout
                )


class BoundedHandler(BaseHTTPRequestHandler):
    """A handler for `BoundedHTTPServer`: every read times out, and `refuse` lingers."""

    server: BoundedHTTPServer

    def setup(self) -> None:
        super().setup()
        # A backstop only: the accept loop cuts the connection at its deadline first.
        self.connection.settimeout(2 * self.server.request_timeout)

    def parse_request(self) -> bool:
        # A connection cut while its headers came in reads as headers that end early:
        # it is not a request.
        return super().parse_request() and not self.server.was_cut(self.request)

    def refuse(self, status: int, body: bytes, content_type: str = "application/json") -> None:
        """Answer `status` without reading the request's body, then linger: half-close,
        and drop what the client still sends until it closes or the bounds are hit."""
        self.close_connection = True
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.server.enter(self.request, Phase.LINGERING)
        left = self.server.drain_limit
        with contextlib.suppress(OSError):
            self.request.shutdown(socket.SHUT_WR)
            while left > 0:
                chunk = self.request.recv(min(65536, left))
                if not chunk:
                    return
                left -= len(chunk)


def _send_quietly(sock: socket.socket, data: bytes) -> None:
    with contextlib.suppress(OSError):
        sock.send(data, socket.MSG_DONTWAIT)
