"""The helper's Unix socket: who may talk to it, and the request/answer loop.

Owns the listening socket at `[helper] socket` (parent created, mode 0660, a
stale socket replaced, a live one refused), the peer check (SO_PEERCRED: root
and `[helper] agent_uids` only; anyone else gets `forbidden` and is logged),
the framing (one JSON object per line, at most 64 KiB) and the dispatch of
each request to the operator. A thread per connection, at most
`MAX_CONNECTIONS` at once: one more is answered `overloaded` and closed by
the accept loop itself, so no peer can make the root process grow. A
connection that sends no complete request for `IDLE_TIMEOUT` is closed (the
agent's client opens one per request).

Must not: decide anything about an operation (that is `operator.py` and
`machine.py`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from reconciler.common import protocol as p
from reconciler.common.answers import status_to_wire
from reconciler.common.sockets import peer_credentials
from reconciler.helper.log import log

if TYPE_CHECKING:
    from reconciler.helper.operator import Operator

IDLE_TIMEOUT = 30.0
MAX_CONNECTIONS = 32
STARTUP_WAIT = 60.0  # how long a request waits for the operator to be attached


class Server:
    def __init__(
        self, listener: socket.socket, allowed_uids: tuple[int, ...], version: str
    ) -> None:
        self.listener = listener
        self.operator: Operator | None = None
        self._attached = threading.Event()
        self.allowed = frozenset({0, *allowed_uids})
        self.version = version
        #: What the status answer says about the machine config (`reload.py`), if anything.
        self.config_report: Callable[[], dict[str, Any]] | None = None
        self.started = time.time()
        self.started_mono = time.monotonic()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def attach(self, operator: Operator) -> None:
        """From now on, requests other than ping go to `operator`."""
        self.operator = operator
        self._attached.set()

    def admit(self, uids: tuple[int, ...]) -> None:
        """From the next connection on, root and `uids` may talk to the helper."""
        self.allowed = frozenset({0, *uids})

    def serve_forever(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed: shutting down
            if not self._slots.acquire(blocking=False):
                self._shed(conn)
                continue
            threading.Thread(target=self._serve_slot, args=(conn,), daemon=True).start()

    def _serve_slot(self, conn: socket.socket) -> None:
        try:
            self._connection(conn)
        finally:
            self._slots.release()

    def _shed(self, conn: socket.socket) -> None:
        """Refuse a connection over the cap without a thread: one short answer, closed."""
        with conn:
            conn.settimeout(0.2)
            self._send(
                conn,
                p.error(
                    p.ErrorCode.OVERLOADED,
                    f"{MAX_CONNECTIONS} connections are open already; try again shortly",
                ),
            )

    def _connection(self, conn: socket.socket) -> None:
        with conn:
            pid, uid, _gid = peer_credentials(conn)
            if uid not in self.allowed:
                log.warning("refused a peer: pid %d uid %d is not root or in agent_uids", pid, uid)
                conn.settimeout(1.0)
                with contextlib.suppress(OSError), conn.makefile("rb") as reader:
                    reader.readline(p.MAX_MESSAGE + 1)  # let its request land, then refuse
                self._send(
                    conn, p.error(p.ErrorCode.FORBIDDEN, f"uid {uid} may not use the helper")
                )
                return
            conn.settimeout(IDLE_TIMEOUT)
            reader = conn.makefile("rb")
            with reader:
                while True:
                    try:
                        line = reader.readline(p.MAX_MESSAGE + 1)
                    except OSError:
                        return
                    if not line:
                        return
                    if len(line) > p.MAX_MESSAGE:
                        self._send(
                            conn,
                            p.error(p.ErrorCode.TOO_LARGE, f"message over {p.MAX_MESSAGE} bytes"),
                        )
                        return  # cannot find the next message boundary: hang up
                    answer, after = self.handle(line, uid)
                    if not self._send(conn, answer):
                        return
                    if after is not None:
                        after()

    def handle(self, line: bytes, uid: int) -> tuple[dict[str, Any], Any]:
        """One request line to its answer (and an action to run once it is sent)."""
        try:
            message = p.decode_line(line)
            request = p.parse_request(message)
            return self._dispatch(request)
        except p.Busy as exc:
            return p.error(exc.code, exc.message, operation=exc.operation), None
        except p.ProtocolError as exc:
            log.info("uid %d: refused request: %s: %s", uid, exc.code, exc.message)
            return p.error(exc.code, exc.message), None
        except Exception as exc:
            log.exception("request failed")
            return p.error(p.ErrorCode.INTERNAL, f"internal error: {exc!r}"), None

    def _dispatch(self, request: p.Request) -> tuple[dict[str, Any], Any]:
        if isinstance(request, p.PingRequest):
            return {
                "ok": True,
                "version": self.version,
                "protocol": p.PROTOCOL_VERSION,
                "pid": os.getpid(),
                "ready": self._attached.is_set(),
                "uptime": round(time.monotonic() - self.started_mono, 3),
                "startedAt": self.started,
                "program": os.path.realpath(sys.argv[0]),
                "features": list(p.FEATURES),
            }, None
        if not self._attached.wait(STARTUP_WAIT) or self.operator is None:
            raise p.ProtocolError(p.ErrorCode.STARTING, "the helper is still starting")
        op = self.operator
        if isinstance(request, p.ApplyRequest):
            return op.apply(request), None
        if isinstance(request, p.ConfirmRequest):
            return op.confirm(request), None
        if isinstance(request, p.RollbackRequest):
            return op.rollback(request), None
        if isinstance(request, p.RebootRequest):
            return op.reboot(request), None
        if isinstance(request, p.UpgradeRequest):
            return op.upgrade(request.store_path), op.upgrade_if_idle
        assert isinstance(request, p.StatusRequest)
        answer = status_to_wire(op.status(request.operation_id))
        if self.config_report is not None:
            answer["config"] = self.config_report()
        return answer, None

    @staticmethod
    def _send(conn: socket.socket, answer: dict[str, Any]) -> bool:
        try:
            conn.sendall(p.encode(answer))
            return True
        except OSError:
            return False
