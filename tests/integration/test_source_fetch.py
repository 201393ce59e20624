"""The git source fetching over file://, git:// and token-protected smart HTTP, for real."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pygit2
import pytest

from reconciler.common.config import SourceConfig
from reconciler.core.errors import TerminalError, TransientError
from reconciler.source import FetchResult, FileTooLarge, GitSource, RetryPolicy
from tests.support.gitrepo import Upstream
from tests.support.gitserve import (
    GitDaemon,
    HttpGitServer,
    free_port,
    self_signed_certificate,
    silent_listener,
)

FAST = RetryPolicy(
    attempts=4,
    initial=0.05,
    max_wait=0.2,
    jitter=0.05,
    deadline=30,
    connect_timeout=2,
    io_timeout=5,
)
TOKEN = "t0ken-for-tests"


def make_source(tmp_path: Path, *urls: str, **source: object) -> GitSource:
    config = SourceConfig(urls=tuple(urls), **source)  # type: ignore[arg-type]
    return GitSource(
        config, tmp_path / "state", tmp_path / "helper", tmp_path / "current-system", retry=FAST
    )


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream.create(tmp_path / "up")
    up.commit(
        {"pullnix.yaml": "kind: NixOSDeployment\n", "hosts/a/configuration.nix": "{}\n"}, "first"
    )
    return up


def test_first_sync_fetches_the_branch_into_a_bare_mirror(
    tmp_path: Path, upstream: Upstream
) -> None:
    source = make_source(tmp_path, upstream.file_url)
    result = source.sync()
    assert result == FetchResult(
        upstream.file_url,
        "main",
        "refs/heads/main",
        upstream.head(),
        fetched=True,
        received_objects=result.received_objects,
        received_bytes=result.received_bytes,
    )
    assert result.received_objects > 0
    assert (source.mirror_path / "HEAD").read_text() == "ref: refs/heads/main\n"
    assert source.repo().is_bare
    assert str(source.repo().references["refs/heads/main"].target) == upstream.head()


def test_fast_forward_fetches_only_the_new_commit(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream.file_url)
    source.sync()
    new = upstream.commit({"pullnix.yaml": "changed\n"})
    result = source.sync()
    assert (result.tip_sha, result.fetched) == (new, True)
    assert 0 < result.received_objects <= 3  # commit, tree, blob


def test_unchanged_remote_stops_after_listing_heads(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream.file_url)
    first = source.sync()
    again = source.sync()
    assert (again.tip_sha, again.fetched, again.received_objects) == (first.tip_sha, False, 0)


def test_unchanged_remote_over_http_costs_one_request_and_no_pack(
    tmp_path: Path, upstream: Upstream
) -> None:
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        (tmp_path / "token").write_text(TOKEN + "\n")
        source = make_source(tmp_path, http.url("fleet.git"), token_file=tmp_path / "token")
        assert source.sync().fetched
        assert len(http.pack_requests()) == 1
        http.requests.clear()
        result = source.sync()
        assert not result.fetched
        assert http.requests == [("GET", "/fleet.git/info/refs", 200)]


def test_http_without_the_token_is_refused_by_the_server(
    tmp_path: Path, upstream: Upstream
) -> None:
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        source = make_source(tmp_path, http.url("fleet.git"))
        with pytest.raises(TerminalError) as err:
            source.sync()
        assert err.value.reason == "AuthenticationFailed"
        assert http.url("fleet.git") in err.value.message
        assert http.requests[0][2] == 401


def test_http_with_a_wrong_token_is_terminal_and_not_retried(
    tmp_path: Path, upstream: Upstream
) -> None:
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        (tmp_path / "token").write_text("wrong")
        source = make_source(tmp_path, http.url("fleet.git"), token_file=tmp_path / "token")
        with pytest.raises(TerminalError) as err:
            source.sync()
        assert err.value.reason == "AuthenticationFailed"
        assert "token_file" in err.value.message
        assert len(http.requests) == 2  # bearer refused, then basic refused; no retry


def test_http_basic_with_the_token_when_the_server_ignores_bearer(
    tmp_path: Path, upstream: Upstream
) -> None:
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        http.accept_bearer = False
        (tmp_path / "token").write_text(TOKEN)
        url = http.url("fleet.git").replace("http://", "http://deploy@")
        source = make_source(tmp_path, url, token_file=tmp_path / "token")
        assert source.sync().tip_sha == upstream.head()
        assert set(http.users) == {"deploy"}


def test_https_with_an_untrusted_certificate_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    tls = self_signed_certificate(tmp_path / "tls")
    with HttpGitServer.serving(upstream.root, TOKEN, tls=tls) as https:
        (tmp_path / "token").write_text(TOKEN)
        source = make_source(tmp_path, https.url("fleet.git"), token_file=tmp_path / "token")
        with pytest.raises(TerminalError) as err:
            source.sync()
        assert err.value.reason == "CertificateRefused"
        assert https.url("fleet.git") in err.value.message
        assert https.requests == []  # the token never left


def test_https_with_a_trusted_certificate_fetches(tmp_path: Path, upstream: Upstream) -> None:
    tls = self_signed_certificate(tmp_path / "tls")
    before = (pygit2.settings.ssl_cert_file, pygit2.settings.ssl_cert_dir)
    pygit2.settings.set_ssl_cert_locations(tls[0], None)
    try:
        with HttpGitServer.serving(upstream.root, TOKEN, tls=tls) as https:
            (tmp_path / "token").write_text(TOKEN)
            source = make_source(tmp_path, https.url("fleet.git"), token_file=tmp_path / "token")
            assert source.sync().tip_sha == upstream.head()
    finally:
        pygit2.settings.set_ssl_cert_locations(*before)


def test_a_silent_server_times_out_as_transient(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"git://127.0.0.1:{listener.getsockname()[1]}/fleet.git"
        source = GitSource(
            SourceConfig(urls=(url,)),
            tmp_path / "state",
            tmp_path,
            tmp_path,
            retry=replace(FAST, attempts=1, io_timeout=1),
        )
        started = time.monotonic()
        with pytest.raises(TransientError) as err:
            source.sync()
        assert time.monotonic() - started < 5
        assert url in err.value.message


def test_a_stalled_http_server_times_out_as_transient_and_the_next_url_serves(
    tmp_path: Path, upstream: Upstream
) -> None:
    with silent_listener() as port:
        stalled = f"http://127.0.0.1:{port}/fleet.git"
        source = GitSource(
            SourceConfig(urls=(stalled,)),
            tmp_path / "state",
            tmp_path,
            tmp_path,
            retry=replace(FAST, attempts=1, io_timeout=1),
        )
        started = time.monotonic()
        with pytest.raises(TransientError) as err:
            source.sync()
        assert time.monotonic() - started < 10
        assert (err.value.reason, stalled in err.value.message) == ("SourceUnavailable", True)
        assert "timed out" in err.value.message

        both = GitSource(
            SourceConfig(urls=(stalled, upstream.file_url)),
            tmp_path / "both",
            tmp_path,
            tmp_path,
            retry=replace(FAST, attempts=1, io_timeout=1),
        )
        result = both.sync()
        assert (result.url, result.tip_sha) == (upstream.file_url, upstream.head())
        assert result.skipped[0].startswith(f"{stalled}: ")


def test_git_daemon_serves_and_an_unchanged_tip_is_not_fetched(
    tmp_path: Path, upstream: Upstream
) -> None:
    with GitDaemon.serving(upstream.root) as daemon:
        source = make_source(tmp_path, daemon.url("fleet.git"))
        assert source.sync().fetched
        new = upstream.commit()
        assert source.sync().tip_sha == new
        result = source.sync()
        assert (result.fetched, result.received_objects, result.url) == (
            False,
            0,
            daemon.url("fleet.git"),
        )


def test_first_url_down_the_next_serves_and_is_reported(tmp_path: Path, upstream: Upstream) -> None:
    with GitDaemon.serving(upstream.root) as daemon:
        down = f"git://127.0.0.1:{free_port()}/fleet.git"
        source = make_source(tmp_path, down, daemon.url("fleet.git"))
        result = source.sync()
        assert result.url == daemon.url("fleet.git")
        assert result.tip_sha == upstream.head()
        assert len(result.skipped) == 1
        assert result.skipped[0].startswith(down)


def test_every_url_down_is_transient_after_retries(tmp_path: Path) -> None:
    urls = [f"git://127.0.0.1:{free_port()}/fleet.git" for _ in range(2)]
    source = make_source(tmp_path, *urls)
    with pytest.raises(TransientError) as err:
        source.sync()
    assert err.value.reason == "SourceUnavailable"
    assert all(url in err.value.message for url in urls)


def test_server_down_then_back_recovers_by_itself(tmp_path: Path, upstream: Upstream) -> None:
    with GitDaemon.serving(upstream.root) as daemon:
        source = make_source(tmp_path, daemon.url("fleet.git"))
        source.sync()
        daemon.stop()
        new = upstream.commit()
        with pytest.raises(TransientError):
            source.sync()
        daemon.start()
        assert source.sync().tip_sha == new


def test_server_cut_off_mid_fetch_is_retried_and_succeeds(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.generate(300)
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        (tmp_path / "token").write_text(TOKEN)
        http.cut_packs = 2
        source = make_source(tmp_path, http.url("fleet.git"), token_file=tmp_path / "token")
        result = source.sync()
        assert result.tip_sha == upstream.head()
        assert result.attempts == 3
        assert [r[2] for r in http.pack_requests()][:2] == [-200, -200]


def test_server_killed_mid_fetch_every_time_is_transient_and_a_restart_heals(
    tmp_path: Path, upstream: Upstream
) -> None:
    upstream.generate(300)
    with HttpGitServer.serving(upstream.root, TOKEN) as http:
        (tmp_path / "token").write_text(TOKEN)
        http.cut_packs = 100
        source = make_source(tmp_path, http.url("fleet.git"), token_file=tmp_path / "token")
        with pytest.raises(TransientError) as err:
            source.sync()
        assert err.value.reason == "SourceUnavailable"
        assert len(http.pack_requests()) == FAST.attempts
        http.stop()
        http.cut_packs = 0
        http.start()
        assert source.sync().tip_sha == upstream.head()
        assert source.repo().get(upstream.head()) is not None
        leftovers = [
            p.name
            for p in (source.mirror_path / "objects" / "pack").iterdir()
            if not p.name.endswith((".pack", ".idx", ".rev"))
        ]
        assert leftovers == []


def test_missing_branch_is_terminal_and_names_the_branches(
    tmp_path: Path, upstream: Upstream
) -> None:
    source = make_source(tmp_path, upstream.file_url, branch="production")
    with pytest.raises(TerminalError) as err:
        source.sync()
    assert err.value.reason == "BranchMissing"
    assert "'production'" in err.value.message
    assert "main" in err.value.message


def test_read_file_reads_from_the_commit_without_a_checkout(
    tmp_path: Path, upstream: Upstream
) -> None:
    first = upstream.head()
    upstream.commit({"pullnix.yaml": "second\n"})
    source = make_source(tmp_path, upstream.file_url)
    tip = source.sync().tip_sha
    assert source.read_file(tip, "pullnix.yaml") == b"second\n"
    assert source.read_file(first, "pullnix.yaml") == b"kind: NixOSDeployment\n"
    assert source.read_file(tip, "hosts/a/configuration.nix") == b"{}\n"
    assert source.read_file(tip, "./hosts//a/../a/configuration.nix") == b"{}\n"
    with pytest.raises(TerminalError, match="does not exist"):
        source.read_file(tip, "../outside")
    assert not any(p.name == "pullnix.yaml" for p in source.mirror_path.rglob("*"))


PEAK_PROBE = """
import sys
from pathlib import Path
from reconciler.common.config import SourceConfig
from reconciler.core.errors import TerminalError
from reconciler.source import GitSource
state = Path(sys.argv[2])
source = GitSource(SourceConfig(urls=(sys.argv[1],)), state / "state", state / "helper",
                   state / "current-system")
try:
    source.read_file(sys.argv[3], "big.yaml", limit=1024 * 1024)
except TerminalError as exc:
    print(type(exc).__name__, exc.reason, exc.message)
# VmHWM: this process's own peak (ru_maxrss would carry the forking parent's over exec)
status = Path("/proc/self/status").read_text().splitlines()
print(next(int(line.split()[1]) // 1024 for line in status if line.startswith("VmHWM:")))
"""


def test_a_file_too_large_is_refused_before_it_is_unpacked(
    tmp_path: Path, upstream: Upstream
) -> None:
    """256 MiB of zeros pack into a few hundred KiB: the size is read from the object's
    header, so refusing it costs the agent nothing near the file's size. (The fetch
    that brought it is another matter: libgit2 inflates it to index the pack;
    docs/limits.md says so.)"""
    with open(upstream.work / "big.yaml", "wb") as big:
        big.truncate(256 * 1024 * 1024)  # a sparse file: no memory here
    tip = upstream.commit({"pullnix.yaml": "kind: NixOSDeployment\n"}, message="a huge file")
    source = make_source(tmp_path, upstream.file_url)
    assert source.sync().tip_sha == tip
    with pytest.raises(FileTooLarge) as err:
        source.read_file(tip, "big.yaml", limit=1024 * 1024)
    assert err.value.reason == "InvalidSpec"
    assert f"big.yaml in commit {tip} is 256.0 MiB; at most 1 MiB" in err.value.message
    assert source.read_file(tip, "pullnix.yaml", limit=64) == b"kind: NixOSDeployment\n"

    probe = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, upstream.file_url, str(tmp_path), tip],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    refused, peak_mib = probe.stdout.splitlines()
    assert refused.startswith("FileTooLarge InvalidSpec big.yaml"), probe.stdout
    assert int(peak_mib) < 128, f"refusing a 256 MiB file took {peak_mib} MiB"


def test_read_file_of_a_missing_path_says_what_is_there(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream.file_url)
    tip = source.sync().tip_sha
    with pytest.raises(TerminalError) as err:
        source.read_file(tip, "missing.yaml")
    assert err.value.reason == "FileMissing"
    assert "missing.yaml" in err.value.message
    assert tip in err.value.message
    assert "pullnix.yaml" in err.value.message
    with pytest.raises(TerminalError, match="directory"):
        source.read_file(tip, "hosts")


def test_export_tree_writes_the_commit_tree(tmp_path: Path, upstream: Upstream) -> None:
    upstream.commit({"bin/run": "#!/bin/sh\n"})
    (upstream.work / "bin" / "run").chmod(0o755)
    tip = upstream.commit({"x": "y"})
    source = make_source(tmp_path, upstream.file_url)
    source.sync()
    dest = source.export_tree(tip, tmp_path / "export")
    assert (dest / "hosts/a/configuration.nix").read_text() == "{}\n"
    assert (dest / "bin/run").stat().st_mode & 0o111
    assert not (dest / ".git").exists()
    with pytest.raises(TerminalError, match="already exists"):
        source.export_tree(tip, dest)


def test_a_broken_mirror_is_set_aside_and_fetched_again(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream.file_url)
    source.mirror_path.mkdir(parents=True)
    (source.mirror_path / "garbage").write_text("not a repository")
    assert source.sync().fetched
    assert list(source.state_dir.glob("mirror.git.broken-*"))


def test_empty_urls_is_a_clear_config_error(tmp_path: Path) -> None:
    with pytest.raises(TerminalError, match=r"\[source\] urls"):
        GitSource(replace(SourceConfig()), tmp_path, tmp_path, tmp_path)
