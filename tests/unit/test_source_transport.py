"""URL parsing, error classification and the retry policy of the source layer (no network)."""

from __future__ import annotations

import pygit2
import pytest

from reconciler.common.urls import redact, redact_url
from reconciler.core.errors import TerminalError, TransientError
from reconciler.source.retry import RetryPolicy, run_with_retries
from reconciler.source.transport import Endpoint, classify, endpoint

QUICK = RetryPolicy(attempts=4, initial=0.001, max_wait=0.002, jitter=0.001, deadline=5)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("ssh://git@git.example.org/fleet.git", Endpoint("ssh", "git.example.org", None, "git")),
        ("ssh://root@127.0.0.1:2222/srv/fleet.git", Endpoint("ssh", "127.0.0.1", 2222, "root")),
        ("git+ssh://git.example.org/fleet", Endpoint("ssh", "git.example.org", None, None)),
        ("git@github.com:org/fleet.git", Endpoint("ssh", "github.com", None, "git")),
        (
            "https://oauth2@gitlab.example.org/fleet.git",
            Endpoint("https", "gitlab.example.org", None, "oauth2"),
        ),
        ("http://127.0.0.1:8080/fleet.git", Endpoint("http", "127.0.0.1", 8080, None)),
        ("git://127.0.0.1:9418/fleet.git", Endpoint("git", "127.0.0.1", 9418, None)),
        ("file:///srv/fleet.git", Endpoint("file", "", None, None)),
        ("/srv/fleet.git", Endpoint("file", "", None, None)),
    ],
)
def test_endpoint(url: str, expected: Endpoint) -> None:
    assert endpoint(url) == expected


@pytest.mark.parametrize(
    ("error", "kind", "reason"),
    [
        (
            pygit2.GitError("failed to connect to 127.0.0.1: Connection refused"),
            TransientError,
            "SourceUnavailable",
        ),
        (pygit2.GitError("early EOF"), TransientError, "SourceUnavailable"),
        (
            pygit2.GitError("unexpected http status code: 401"),
            TerminalError,
            "AuthenticationFailed",
        ),
        (
            pygit2.GitError("Failed to authenticate SSH session: Unable to send userauth"),
            TransientError,
            "SourceUnavailable",
        ),  # the socket failed, not the key
        (
            pygit2.GitError("Username/PublicKey combination invalid"),
            TerminalError,
            "AuthenticationFailed",
        ),
        (pygit2.errors.AuthError("auth"), TerminalError, "AuthenticationFailed"),
        (pygit2.errors.CertificateError("cert"), TerminalError, "HostKeyRefused"),
        (TerminalError("refused", reason="HostKeyRefused"), TerminalError, "HostKeyRefused"),
    ],
)
def test_classify(error: BaseException, kind: type, reason: str) -> None:
    classified = classify(error, "git://example.org:40123/fleet.git")
    assert type(classified) is kind
    assert classified.reason == reason
    assert "example.org" in classified.message or error is classified


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "https://deploy:t0ken@git.example.org/fleet.git",
            "https://deploy:***@git.example.org/fleet.git",
        ),
        ("https://oauth2:a:b@git.example.org:8443/x", "https://oauth2:***@git.example.org:8443/x"),
        ("http://deploy:t0ken@127.0.0.1:9", "http://deploy:***@127.0.0.1:9"),
        (
            "https://oauth2@gitlab.example.org/fleet.git",
            "https://oauth2@gitlab.example.org/fleet.git",
        ),
        ("ssh://git@git.example.org/fleet.git", "ssh://git@git.example.org/fleet.git"),
        ("git@github.com:org/fleet.git", "git@github.com:org/fleet.git"),
        ("file:///srv/fleet.git", "file:///srv/fleet.git"),
    ],
)
def test_redact_url_hides_the_password_and_keeps_the_rest(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_failure_never_repeats_the_password_of_its_url() -> None:
    url = "https://deploy:t0ken@git.example.org/fleet.git"
    error = pygit2.GitError(f"unexpected http status code: 500 for {url} (token t0ken)")
    message = classify(error, url).message
    assert "t0ken" not in message
    assert message.startswith("https://deploy:***@git.example.org/fleet.git: ")
    assert redact("nothing secret here", url) == "nothing secret here"


def test_a_port_number_with_401_in_it_is_not_an_auth_failure() -> None:
    error = pygit2.GitError("failed to connect to 127.0.0.1:40123: timed out")
    assert isinstance(classify(error, "git://127.0.0.1:40123/x"), TransientError)


def test_transient_errors_are_retried_until_they_pass() -> None:
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise TransientError("down")
        return "ok"

    assert run_with_retries(QUICK, flaky) == ("ok", 3)


def test_terminal_errors_are_raised_at_once() -> None:
    calls: list[int] = []

    def refused() -> None:
        calls.append(1)
        raise TerminalError("no", reason="AuthenticationFailed")

    with pytest.raises(TerminalError):
        run_with_retries(QUICK, refused)
    assert len(calls) == 1


def test_retries_stop_after_the_attempts_and_raise_the_last_error() -> None:
    calls: list[int] = []

    def down() -> None:
        calls.append(1)
        raise TransientError(f"down {len(calls)}")

    with pytest.raises(TransientError, match="down 4"):
        run_with_retries(QUICK, down)
    assert len(calls) == 4
