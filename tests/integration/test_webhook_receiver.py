"""The webhook's HTTP server on real sockets: refusals a sender can read, and bounds that hold.

The receiver runs in this process (port 0, so no port is guessed) with its real
handler; the clients are urllib, http.client and raw sockets. The whole agent
under the same flood is in test_agent_triggers.py.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from reconciler.controller.webhook import WebhookServer
from reconciler.core.webhook_events import MAX_BODY, sign
from tests.support.agentmachine import wait_for
from tests.support.slowloris import closed_by_peer, half_open

SECRET = b"hook-secret"
PUSH = json.dumps({"ref": "refs/heads/main", "after": "a" * 40}).encode()


@pytest.fixture
def server() -> Iterator[WebhookServer]:
    fired: list[str] = []
    server = WebhookServer(("127.0.0.1", 0), SECRET, "main", fired.append)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def port(server: WebhookServer) -> int:
    return int(server.server_address[1])


def post(server: WebhookServer, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port(server)}/hooks/pullnix", data=body, headers=headers
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def signed_push(server: WebhookServer) -> int:
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={sign(SECRET, PUSH)}"}
    return post(server, PUSH, headers)[0]


@pytest.mark.parametrize("size", [MAX_BODY + 1, 4 * MAX_BODY, 24 * MAX_BODY])
def test_a_sender_still_sending_an_oversized_body_reads_the_413(
    server: WebhookServer, size: int
) -> None:
    # The receiver answers before reading the body, then drains it: without that the
    # client, still in sendall, gets EPIPE or a reset instead of the answer.
    for _ in range(10):
        status, body = post(server, b"x" * size, {"X-GitHub-Event": "push"})
        assert status == 413
        assert str(MAX_BODY) in json.loads(body)["error"]
    assert server.counts == {"queued": 0, "ignored": 0, "refused": 0}


def test_a_chunked_body_without_a_length_reads_the_411(server: WebhookServer) -> None:
    for _ in range(5):
        conn = http.client.HTTPConnection("127.0.0.1", port(server), timeout=60)
        chunks = (b"y" * 65536 for _ in range(32))  # 2 MiB, never announced
        conn.request("POST", "/hooks/pullnix", body=chunks, encode_chunked=True)
        answer = conn.getresponse()
        assert answer.status == 411
        assert "Content-Length" in json.loads(answer.read())["error"]
        conn.close()


def test_a_refused_sender_that_never_finishes_is_let_go_after_the_linger(
    server: WebhookServer,
) -> None:
    server.linger_timeout = 0.5
    with socket.create_connection(("127.0.0.1", port(server)), timeout=30) as sock:
        sock.sendall(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 * MAX_BODY) + b"z"
        )
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.0 413 ")
        wait_for(lambda: closed_by_peer(sock), 30, "the receiver to stop lingering")
    wait_for(lambda: server.open_connections == 0, 30, "the connection to be forgotten")


def test_headers_that_trickle_in_are_cut_off_at_the_deadline_from_accept(
    server: WebhookServer,
) -> None:
    # Each byte arrives well within a read timeout; only a deadline from accept ends it.
    server.request_timeout = 1.0
    header = b"POST / HTTP/1.1\r\nHost: x\r\n" + b"X-Slow: " + b"s" * 400
    with socket.create_connection(("127.0.0.1", port(server)), timeout=30) as sock:
        sent = 0
        while sent < len(header) and not closed_by_peer(sock):
            try:
                sock.send(header[sent : sent + 1])
            except OSError:
                break
            sent += 1
            time.sleep(0.05)
        assert sent < len(header), "the receiver waited for 20 s of headers"
        wait_for(lambda: closed_by_peer(sock), 30, "the receiver to close the trickle")
    assert server.guard_counts["timedOut"] == 1


@pytest.mark.slow
def test_two_hundred_half_open_connections_stay_bounded_and_a_push_still_gets_in(
    server: WebhookServer,
) -> None:
    server.request_timeout = 3.0
    peak = [0]

    def sample() -> None:
        peak[0] = max(peak[0], server.open_connections)

    with half_open(port(server), 200, sample) as socks:
        assert signed_push(server) == 202
        sample()
        assert peak[0] <= server.max_connections
        wait_for(lambda: all(closed_by_peer(s) for s in socks), 60, "every half-open one closed")
    wait_for(lambda: server.open_connections == 0, 30, "no connection left open")
    assert server.counts["queued"] == 1
    guard = server.guard_counts  # each of the 200 shed, turned away or cut at its deadline
    assert guard["shed"] + guard["turnedAway"] + guard["timedOut"] == 200, guard
