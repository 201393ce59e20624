"""The webhook receiver: forge push events over HTTP become a trigger.

Owns the HTTP side of `[triggers] webhook_listen` ("HOST:PORT", "[::1]:PORT"):
a bounded threaded `http.server` (`httpguard`: a cap on connections, a deadline
from accept, refusals the sender can read) that accepts POST on any path,
refuses a body over `core.webhook_events.MAX_BODY` (413) or without a length
(411) before reading it, then lingers so a sender still sending reads the
status; reads the shared secret from `webhook_secret_file` once at start, and
asks `core.webhook_events.judge` for the verdict: 401 (logged, nothing queued),
202 ignored, or 202 queued (the trigger fires). Answers are small JSON documents.

Must not: fetch, run a pass, or believe the commit a request names (the pass
fetches and verifies on its own); it only says "look now".
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.common.config import ConfigError, MachineConfig
from reconciler.controller.httpguard import BoundedHandler, BoundedHTTPServer
from reconciler.core.connections import Phase
from reconciler.core.webhook_events import MAX_BODY, Ignored, Push, judge

log = logging.getLogger("pullnix.webhook")


def parse_listen(listen: str, origin: str = "triggers.webhook_listen") -> tuple[str, int]:
    """`HOST:PORT` or `[V6]:PORT` to (host, port); ConfigError saying what is accepted."""
    host, sep, port = listen.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{origin}: {listen!r} is not HOST:PORT (e.g. 127.0.0.1:9170)")
    return host, int(port)


def read_secret(machine: MachineConfig) -> bytes:
    """The webhook secret; ConfigError when the receiver is on but has no usable secret."""
    path = machine.triggers.webhook_secret_file
    if path is None:
        raise ConfigError(
            "triggers.webhook_secret_file: required when webhook_listen is set "
            "(every push event must be signed with it)"
        )
    try:
        secret = Path(path).read_bytes().strip()
    except OSError as exc:
        raise ConfigError(
            f"triggers.webhook_secret_file: cannot read {path}: {exc.strerror}"
        ) from None
    if not secret:
        raise ConfigError(f"triggers.webhook_secret_file: {path} is empty")
    return secret


class WebhookServer(BoundedHTTPServer):
    """The receiver's HTTP server, bounded as `httpguard` says; `address` may name port 0."""

    def __init__(
        self, address: tuple[str, int], secret: bytes, branch: str, fire: Callable[[str], None]
    ) -> None:
        super().__init__(address, _Handler)
        self.secret = secret
        self.branch = branch
        self.fire = fire
        self.counts = {"queued": 0, "ignored": 0, "refused": 0}
        self._count_lock = threading.Lock()

    def count(self, what: str) -> None:
        with self._count_lock:
            self.counts[what] += 1


class _Handler(BoundedHandler):
    server: WebhookServer
    server_version = "pullnix-webhook"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._answer(405, {"error": "send push events with POST"})

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self.refuse(411, _json({"error": "a Content-Length is required"}))
            return
        if int(length) > MAX_BODY:
            self.refuse(413, _json({"error": f"the body is over {MAX_BODY} bytes"}))
            return
        try:
            body = self.rfile.read(int(length))
        except OSError:
            return
        if len(body) < int(length):  # the client went away, or was cut off at its deadline
            return
        self.server.enter(self.request, Phase.WORKING)
        headers = {k: v for k, v in self.headers.items()}
        verdict = judge(headers, body, self.server.secret, self.server.branch)
        if isinstance(verdict, Push):
            self.server.count("queued")
            self.server.fire("webhook")
            log.info(
                "%s push to %s (%s): pass queued",
                verdict.forge,
                verdict.ref,
                verdict.after[:12] or "?",
            )
            self._answer(verdict.status, {"status": "queued", "forge": verdict.forge})
        elif isinstance(verdict, Ignored):
            self.server.count("ignored")
            log.info("%s event ignored: %s", verdict.forge, verdict.reason)
            self._answer(verdict.status, {"status": "ignored", "reason": verdict.reason})
        else:
            self.server.count("refused")
            log.warning("refused a webhook from %s: %s", self.client_address[0], verdict.reason)
            self._answer(verdict.status, {"error": verdict.reason})

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        body = _json(doc)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _json(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode() + b"\n"


class WebhookReceiver:
    """The receiver for one machine config; `start` binds, `stop` closes."""

    def __init__(self, machine: MachineConfig, fire: Callable[[str], None]) -> None:
        self.address = parse_listen(machine.triggers.webhook_listen)
        secret = read_secret(machine)
        try:
            self._server = WebhookServer(self.address, secret, machine.source.branch, fire)
        except OSError as exc:
            raise ConfigError(
                f"triggers.webhook_listen: cannot listen on "
                f"{machine.triggers.webhook_listen}: {exc.strerror}"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            name="webhook",
            kwargs={"poll_interval": 0.2},
            daemon=True,
        )

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def counts(self) -> dict[str, int]:
        return {**self._server.counts, **self._server.guard_counts}

    def start(self) -> None:
        self._thread.start()
        log.info("webhook receiver on %s:%d", self.address[0], self.port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
