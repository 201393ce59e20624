"""The git source against what a crash, a careless operator or a moved tag leaves behind.

- a lock file libgit2 left in the mirror when the agent was killed mid-update
  (`refs/heads/main.lock`) is stale, because every writer of the mirror holds
  its flock: it is cleared and the new commit is fetched;
- a pinned tag that moves upstream is re-resolved from the ref advertisement
  the pass lists anyway;
- a pin git would refuse as a ref name is terminal (InvalidSpec), never retried.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.core.errors import TerminalError
from tests.integration.test_source_fetch import make_source
from tests.support.gitrepo import Upstream


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream.create(tmp_path / "up")
    up.commit({"pullnix.yaml": "kind: NixOSDeployment\n"}, "first")
    return up


@pytest.mark.parametrize("lock", ["refs/heads/main.lock", "packed-refs.lock", "HEAD.lock"])
def test_a_lock_left_by_a_killed_writer_does_not_stop_the_next_fetch(
    tmp_path: Path, upstream: Upstream, lock: str
) -> None:
    source = make_source(tmp_path, upstream.file_url)
    source.sync()
    (source.mirror_path / lock).write_text("")  # what libgit2 leaves when SIGKILLed
    new = upstream.commit({"pullnix.yaml": "kind: NixOSDeployment\n# 2\n"}, "second")
    again = make_source(tmp_path, upstream.file_url)  # a restarted agent
    assert again.sync().tip_sha == new
    assert not (again.mirror_path / lock).exists()


def test_a_stale_lock_on_a_ref_the_mirror_already_has_is_cleared_too(
    tmp_path: Path, upstream: Upstream
) -> None:
    """The branch moved back to a commit the mirror has: only the ref is rewritten."""
    first = upstream.head()
    source = make_source(tmp_path, upstream.file_url)
    source.sync()
    upstream.commit({"pullnix.yaml": "kind: NixOSDeployment\n# 2\n"}, "second")
    source.sync()
    upstream.reset_branch(first)
    (source.mirror_path / "refs/heads/main.lock").write_text("")
    assert make_source(tmp_path, upstream.file_url).sync().tip_sha == first


def test_a_moved_tag_is_followed(tmp_path: Path, upstream: Upstream) -> None:
    first = upstream.head()
    upstream.tag("release", first)
    source = make_source(tmp_path, upstream.file_url)
    tip = source.sync().tip_sha
    assert source.resolve(tip, "release") == first
    second = upstream.commit({"pullnix.yaml": "kind: NixOSDeployment\n# 2\n"}, "second")
    upstream.git("tag", "-f", "-a", "-m", "moved", "release", second)
    tip = source.sync().tip_sha
    assert source.resolve(tip, "release") == second


def test_a_tag_deleted_upstream_no_longer_resolves(tmp_path: Path, upstream: Upstream) -> None:
    upstream.tag("release", upstream.head())
    source = make_source(tmp_path, upstream.file_url)
    tip = source.sync().tip_sha
    source.resolve(tip, "release")
    upstream.git("tag", "-d", "release")
    tip = source.sync().tip_sha
    with pytest.raises(TerminalError) as caught:
        source.resolve(tip, "release")
    assert caught.value.reason == "RevisionMissing"


@pytest.mark.parametrize("pin", ["../heads/main", "a..b", "v1.lock", "x/", ".hidden", "a//b"])
def test_a_pin_git_refuses_is_terminal(tmp_path: Path, upstream: Upstream, pin: str) -> None:
    source = make_source(tmp_path, upstream.file_url)
    tip = source.sync().tip_sha
    with pytest.raises(TerminalError) as caught:
        source.resolve(tip, pin)
    assert caught.value.reason == "InvalidSpec"
    assert "tag name" in caught.value.message
