"""A client for the agent's local API (localapi.py), for the CLI and tests.

Owns the client side: one connection per request, one line out, one line in.
`AgentUnavailable` means nobody answers (no agent runs: the CLI then acts on
its own); `AgentRefused` is an answer with `ok: false`.

Must not: retry; a `reconcile` or `rollback` the agent may have accepted is
never sent twice.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from reconciler.common.client import exchange_line
from reconciler.common.wire import encode


class AgentUnavailable(Exception):
    """No agent answers on the socket."""


class AgentRefused(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class AgentClient:
    def __init__(self, socket_path: Path | str, timeout: float = 30.0) -> None:
        self.socket_path = str(socket_path)
        self.timeout = timeout

    def request(
        self, op: str, *, socket_timeout: float | None = None, **fields: Any
    ) -> dict[str, Any]:
        """Send one request; its answer when ok, else AgentRefused. A request that waits
        needs a `socket_timeout` longer than its own `timeout` field."""
        limit = socket_timeout or self.timeout
        data = encode({"op": op, **fields})
        try:
            line = exchange_line(self.socket_path, data, limit)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise AgentUnavailable(f"{self.socket_path}: {exc.strerror}") from None
        except PermissionError as exc:
            raise AgentRefused("forbidden", f"{self.socket_path}: {exc.strerror}") from None
        except TimeoutError:
            raise AgentRefused("timeout", f"no answer from the agent after {limit:g}s") from None
        except OSError as exc:
            raise AgentUnavailable(f"{self.socket_path}: {exc}") from None
        if not line:
            raise AgentUnavailable(f"{self.socket_path}: the agent hung up")
        answer: dict[str, Any] = json.loads(line)
        if not answer.get("ok"):
            raise AgentRefused(str(answer.get("error")), str(answer.get("message")))
        return answer

    def ping(self) -> dict[str, Any]:
        return self.request("ping", socket_timeout=5.0)

    def answers(self) -> bool:
        """Is an agent running here?"""
        try:
            self.ping()
        except AgentUnavailable:
            return False
        except AgentRefused:
            return True  # it runs, it just refuses us: the caller will hear why
        return True
