"""The git source over SSH against a real sshd: deploy key, pinned host keys, refusals."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.common.config import SourceConfig
from reconciler.core.errors import TerminalError, TransientError
from reconciler.source import GitSource, RetryPolicy
from tests.support.gitrepo import Upstream
from tests.support.gitserve import silent_listener
from tests.support.sshserve import SshGitServer, ssh_keygen

FAST = RetryPolicy(
    attempts=3,
    initial=0.05,
    max_wait=0.2,
    jitter=0.05,
    deadline=30,
    connect_timeout=3,
    io_timeout=10,
)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshGitServer]:
    with SshGitServer.serving(tmp_path_factory.mktemp("sshd")) as server:
        yield server


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream.create(tmp_path / "up")
    up.commit({"pullnix.yaml": "over ssh\n"})
    return up


def make_source(
    tmp_path: Path,
    sshd: SshGitServer,
    upstream: Upstream,
    known_hosts: str,
    key: Path | None = None,
) -> GitSource:
    (tmp_path / "known_hosts").write_text(known_hosts)
    config = SourceConfig(
        urls=(sshd.url(upstream.git_dir),),
        ssh_key_file=key or sshd.deploy_key,
        known_hosts_file=tmp_path / "known_hosts",
    )
    return GitSource(
        config, tmp_path / "state", tmp_path / "helper", tmp_path / "current", retry=FAST
    )


@pytest.mark.parametrize("hashed", [False, True], ids=["plain", "hashed"])
def test_ssh_with_deploy_key_and_pinned_host_key_fetches(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream, hashed: bool
) -> None:
    source = make_source(
        tmp_path,
        sshd,
        upstream,
        "# pinned\nother.example ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBeJ\n"
        + sshd.known_hosts_line(hashed=hashed),
    )
    result = source.sync()
    assert (result.tip_sha, result.fetched) == (upstream.head(), True)
    assert source.read_file(result.tip_sha, "pullnix.yaml") == b"over ssh\n"
    again = source.sync()
    assert (again.fetched, again.received_objects) == (False, 0)


def test_unknown_host_key_is_refused_naming_host_and_file(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream
) -> None:
    source = make_source(tmp_path, sshd, upstream, "")
    with pytest.raises(TerminalError) as err:
        source.sync()
    assert err.value.reason == "HostKeyRefused"
    assert f"[127.0.0.1]:{sshd.port}" in err.value.message
    assert str(tmp_path / "known_hosts") in err.value.message
    assert "unknown" in err.value.message
    assert not source.repo().references.get("refs/heads/main")


def test_changed_host_key_is_refused(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream
) -> None:
    other = ssh_keygen(tmp_path / "impostor")
    kind, blob = other.with_suffix(".pub").read_text().split()[:2]
    source = make_source(tmp_path, sshd, upstream, f"[127.0.0.1]:{sshd.port} {kind} {blob}\n")
    with pytest.raises(TerminalError) as err:
        source.sync()
    assert err.value.reason == "HostKeyRefused"
    assert "CHANGED" in err.value.message


def test_host_key_pinned_for_another_port_is_unknown(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream
) -> None:
    kind, blob = sshd.host_key_blob()
    source = make_source(tmp_path, sshd, upstream, f"127.0.0.1 {kind} {blob}\n")
    with pytest.raises(TerminalError, match="unknown") as err:
        source.sync()
    assert err.value.reason == "HostKeyRefused"


def test_wrong_deploy_key_is_terminal_authentication_failure(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream
) -> None:
    wrong = ssh_keygen(tmp_path / "wrong_key")
    source = make_source(tmp_path, sshd, upstream, sshd.known_hosts_line(), key=wrong)
    with pytest.raises(TerminalError) as err:
        source.sync()
    assert err.value.reason == "AuthenticationFailed"
    assert str(wrong) in err.value.message


def test_an_ssh_server_that_never_sends_its_banner_times_out_as_transient(
    tmp_path: Path, upstream: Upstream
) -> None:
    with silent_listener() as port:
        url = f"ssh://git@127.0.0.1:{port}{upstream.git_dir}"
        (tmp_path / "known_hosts").write_text("")
        config = SourceConfig(
            urls=(url,),
            ssh_key_file=ssh_keygen(tmp_path / "key"),
            known_hosts_file=tmp_path / "known_hosts",
        )
        source = GitSource(
            config,
            tmp_path / "state",
            tmp_path,
            tmp_path,
            retry=replace(FAST, attempts=1, io_timeout=1),
        )
        started = time.monotonic()
        with pytest.raises(TransientError) as err:
            source.sync()
        assert time.monotonic() - started < 10
        assert err.value.reason == "SourceUnavailable"
        assert url in err.value.message


def test_an_ssh_session_that_stalls_after_login_times_out_as_transient(
    tmp_path: Path, sshd: SshGitServer, upstream: Upstream
) -> None:
    """The server takes the key and the session, then never starts git-upload-pack:
    libgit2's read timeout covers the SSH channel too, not only the connect."""
    key = ssh_keygen(tmp_path / "stall_key")
    sshd.authorize(key, command="sleep 600")
    (tmp_path / "known_hosts").write_text(sshd.known_hosts_line())
    config = SourceConfig(
        urls=(sshd.url(upstream.git_dir),),
        ssh_key_file=key,
        known_hosts_file=tmp_path / "known_hosts",
    )
    source = GitSource(
        config,
        tmp_path / "state",
        tmp_path,
        tmp_path,
        retry=replace(FAST, attempts=1, io_timeout=2),
    )
    started = time.monotonic()
    with pytest.raises(TransientError) as err:
        source.sync()
    assert time.monotonic() - started < 30  # the session itself would sleep for 600 s
    assert (err.value.reason, "timed out" in err.value.message.lower()) == (
        "SourceUnavailable",
        True,
    )
