"""The agent sends optional request fields only to a helper that says it takes them.

A helper of the first release answers `ping` without `features` and refuses any
field it does not know, so an agent newer than its helper (the helper is
upgraded only when idle, on its own terms) must not send `sourceRevision` to
it. The stand-in below is that first release's answer, on a real Unix socket.
"""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from reconciler.common.client import HelperClient
from reconciler.common.protocol import FEATURES

STORE_PATH = "/nix/store/" + "a" * 32 + "-nixos-system-edge-01-2"
KNOWN_APPLY_FIELDS = {
    "v",
    "op",
    "storePath",
    "revision",
    "action",
    "trial",
    "healthChecks",
    "confirmTimeout",
    "requireConfirm",
    "traceparent",
    "activationTimeout",
}


class StandInHelper:
    """Answers ping (with `features` or not, as told) and apply, keeping each apply."""

    def __init__(self, path: Path, features: list[str] | None) -> None:
        self.features = features
        self.applies: list[dict[str, object]] = []
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(str(path))
        self.listener.listen(8)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn, conn.makefile("rwb") as stream:
                for line in stream:
                    stream.write(json.dumps(self._answer(json.loads(line))).encode() + b"\n")
                    stream.flush()

    def _answer(self, request: dict[str, object]) -> dict[str, object]:
        if request["op"] == "ping":
            answer: dict[str, object] = {"v": 1, "ok": True, "protocol": 1, "pid": 1}
            if self.features is not None:
                answer["features"] = self.features
            return answer
        unknown = set(request) - KNOWN_APPLY_FIELDS - set(self.features or ())
        if unknown:
            return {
                "v": 1,
                "ok": False,
                "error": "bad-field",
                "message": f"unknown field {sorted(unknown)[0]!r}",
            }
        self.applies.append(request)
        return {"v": 1, "ok": True, "operationId": "op-1", "state": "Pending"}


@pytest.fixture
def sock(tmp_path: Path) -> Path:
    return tmp_path / "helper.sock"


def test_a_first_release_helper_gets_no_source_revision_and_still_applies(sock: Path) -> None:
    old = StandInHelper(sock, features=None)
    op = HelperClient(sock).apply(STORE_PATH, revision="b" * 40, source_revision="c" * 40)
    assert op == "op-1"
    assert "sourceRevision" not in old.applies[0]
    old.listener.close()


def test_a_helper_that_takes_source_revision_gets_it(sock: Path) -> None:
    new = StandInHelper(sock, features=list(FEATURES))
    HelperClient(sock).apply(STORE_PATH, revision="b" * 40, source_revision="c" * 40)
    assert new.applies[0]["sourceRevision"] == "c" * 40
    new.listener.close()
