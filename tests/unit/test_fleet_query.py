"""Asking Prometheus: garbage is an error (never an empty fleet), and failures are backed off.

A real HTTP server on loopback answers what each case says; the client is pullnix's own.
"""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from reconciler.core.waves import FleetUnknown, FleetView
from reconciler.telemetry.fleet_query import FleetAsker, Prometheus, PrometheusError


class Answers:
    def __init__(self) -> None:
        self.status = 200
        self.body = b""
        self.requests: list[str] = []


@pytest.fixture
def server() -> Iterator[tuple[str, Answers]]:
    answers = Answers()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answers.requests.append(self.path)
            self.send_response(answers.status)
            self.send_header("Content-Length", str(len(answers.body)))
            self.end_headers()
            self.wfile.write(answers.body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


def vector(*samples: tuple[dict[str, str], str]) -> bytes:
    result = [{"metric": m, "value": [1.0, v]} for m, v in samples]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


GARBAGE = [
    ("not JSON", 200, b"<html>proxy error</html>", "is not JSON"),
    ("an error status", 200, b'{"status": "error", "error": "bad query"}', "success"),
    ("HTTP 503", 503, b"", "HTTP 503"),
    ("a matrix", 200, b'{"status": "success", "data": {"resultType": "matrix", "result": []}}',
     "not an instant vector"),
    ("a malformed sample", 200,
     b'{"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}',
     "malformed"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("status", "body", "message"), [g[1:] for g in GARBAGE], ids=[g[0] for g in GARBAGE]
)
def test_an_answer_that_is_not_a_vector_is_an_error(
    server: tuple[str, Answers], status: int, body: bytes, message: str
) -> None:
    url, answers = server
    answers.status, answers.body = status, body
    with pytest.raises(PrometheusError, match=message):
        Prometheus(url).vector("up")


def test_after_a_failure_the_asker_waits_out_its_backoff_before_asking_again(
    server: tuple[str, Answers],
) -> None:
    url, answers = server
    answers.body = b"garbage"
    now = [1000.0]
    asker = FleetAsker(url, clock=lambda: now[0], initial=2.0, cap=5.0)
    first = asker.ask()
    assert isinstance(first, FleetUnknown)
    assert (first.retry_in, len(answers.requests)) == (2.0, 1)
    now[0] += 1.5
    held = asker.ask()
    assert isinstance(held, FleetUnknown)
    assert held.retry_in == pytest.approx(0.5)
    assert len(answers.requests) == 1  # nothing asked inside the backoff
    now[0] += 0.5
    assert isinstance(second := asker.ask(), FleetUnknown)
    assert second.retry_in == 4.0  # doubled
    now[0] += 4.0
    assert isinstance(third := asker.ask(), FleetUnknown)
    assert third.retry_in == 5.0  # capped

    answers.body = vector(
        ({"host": "canary-01", "wave": "canary", "revision": "abc", "ready": "True"}, "1000")
    )
    now[0] += 5.0
    answer = asker.ask()
    assert isinstance(answer, FleetView)
    assert [h.host for h in answer.hosts] == ["canary-01"]


def test_without_a_url_the_asker_says_what_to_set() -> None:
    answer = FleetAsker("", clock=lambda: 0.0).ask()
    assert isinstance(answer, FleetUnknown)
    assert "prometheus_url is not set" in answer.error


def test_the_gate_asks_only_about_the_earlier_waves_and_the_revision(
    server: tuple[str, Answers],
) -> None:
    url, answers = server
    answers.body = vector()
    asker = FleetAsker(url, clock=lambda: 0.0)
    assert asker.ask(("canary", "edge"), "3f2a1c") == FleetView()
    queries = [urllib.parse.unquote_plus(path) for path in answers.requests]
    assert sum("/api/v1/targets" in q for q in queries) == 1
    fleet_queries = [q for q in queries if "pullnix_fleet_" in q]
    assert len(fleet_queries) == 5
    assert all('{wave=~"canary|edge"' in q for q in fleet_queries)
    assert any('{wave=~"canary|edge", revision="3f2a1c"}' in q for q in fleet_queries)
    asker.ask(("canary",), "3f2a1c")
    assert sum("/api/v1/targets" in p for p in answers.requests) == 1  # the intervals are kept
