"""How the helper's gitRemote check reaches a remote: the machine's key, pinned hosts, token;
and the http check against a real server on loopback, its request made outside the helper."""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from reconciler.common.config import SourceConfig
from reconciler.common.protocol import parse_check
from reconciler.helper.health import git_environment, run_check


def test_ssh_uses_the_deploy_key_and_only_pinned_host_keys(tmp_path: Path) -> None:
    source = SourceConfig(
        urls=("ssh://git@git.example.org/fleet.git",),
        ssh_key_file=Path("/etc/pullnix/key"),
        known_hosts_file=Path("/etc/pullnix/known hosts"),
    )
    env = git_environment(source.urls[0], source)
    assert shlex.split(env["GIT_SSH_COMMAND"]) == [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-i",
        "/etc/pullnix/key",
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        "UserKnownHostsFile=/etc/pullnix/known hosts",
    ]
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_CONFIG_COUNT" not in env


def test_without_pinned_hosts_an_unknown_host_is_still_refused() -> None:
    env = git_environment("ssh://h/r", SourceConfig())
    assert "StrictHostKeyChecking=yes" in shlex.split(env["GIT_SSH_COMMAND"])


def test_token_goes_in_an_http_header_kept_out_of_argv(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    source = SourceConfig(token_file=token)
    env = git_environment("https://git.example.org/fleet.git", source)
    assert (env["GIT_CONFIG_COUNT"], env["GIT_CONFIG_KEY_0"], env["GIT_CONFIG_VALUE_0"]) == (
        "1",
        "http.extraHeader",
        "Authorization: Bearer s3cret",
    )
    assert "GIT_CONFIG_COUNT" not in git_environment("ssh://h/r", source)  # only for http(s)


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        status, body = (200, b"ok\n") if self.path == "/status" else (503, b"starting\n")
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def http_check(url: str, **fields: Any) -> dict[str, Any]:
    return {"name": "web", "timeout": fields.pop("timeout", 5), "http": {"url": url, **fields}}


@pytest.mark.parametrize(
    ("path", "fields", "ok", "says"),
    [
        ("/status", {"bodyRegex": "^ok$"}, True, "status 200"),
        ("/status", {"bodyRegex": "^broken"}, False, "status 200 but the body does not match"),
        ("/other", {}, False, "status 503, expected 200"),
        ("/other", {"expectStatus": 503, "bodyRegex": "starting"}, True, "status 503"),
    ],
)
def test_http_check_reads_status_and_body(
    server: str, path: str, fields: dict[str, Any], ok: bool, says: str
) -> None:
    result = run_check(parse_check(http_check(server + path, **fields), 0), SourceConfig())
    assert (result.kind, result.ok) == ("http", ok), result.message
    assert result.message.startswith(f"GET {server}{path}: {says}"), result.message


def test_http_check_says_why_nobody_answered() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        refused = f"http://127.0.0.1:{closed.getsockname()[1]}/"
    with socket.socket() as mute:  # accepts (the backlog does) and never answers
        mute.bind(("127.0.0.1", 0))
        mute.listen()
        silent = f"http://127.0.0.1:{mute.getsockname()[1]}/"
        slow = run_check(parse_check(http_check(silent, timeout=0.5), 0), SourceConfig())
    fast = run_check(parse_check(http_check(refused), 0), SourceConfig())
    assert (fast.ok, fast.message) == (False, f"GET {refused}: [Errno 111] Connection refused")
    assert (slow.ok, slow.message) == (False, f"GET {silent}: timed out")


def test_http_check_leaves_urllib_and_ssl_out_of_the_helper(server: str) -> None:
    # The helper lives for months: what one check imports it would keep for good.
    probe = (
        "import json, sys\n"
        "from reconciler.common.config import SourceConfig\n"
        "from reconciler.helper.health import run_check\n"
        "from reconciler.common.protocol import parse_check\n"
        f"spec = parse_check({http_check(server + '/status')!r}, 0)\n"
        "result = run_check(spec, SourceConfig())\n"
        "print(json.dumps([result.ok, sorted(m for m in ('urllib.request', 'http.client',"
        " 'ssl') if m in sys.modules)]))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert json.loads(out.stdout) == [True, []], out.stderr
