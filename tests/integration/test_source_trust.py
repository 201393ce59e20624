"""Trusting what was fetched: signatures, downgrade protection and pins, with real git,
ssh-keygen and gpg."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.common.config import SourceConfig
from reconciler.common.records import CommittedGeneration, append_committed
from reconciler.core.errors import TerminalError
from reconciler.source import PINNED_REF, GitSource, RetryPolicy, Verified
from tests.support.gitrepo import GpgSigner, SshSigner, Upstream, git

FAST = RetryPolicy(
    attempts=2,
    initial=0.05,
    max_wait=0.1,
    jitter=0.01,
    deadline=20,
    connect_timeout=2,
    io_timeout=5,
)


@pytest.fixture(scope="module")
def ssh_signer(tmp_path_factory: pytest.TempPathFactory) -> SshSigner:
    return SshSigner.create(tmp_path_factory.mktemp("ssh-signer"), "ci@example.org")


@pytest.fixture(scope="module")
def gpg_signer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GpgSigner]:
    signer = GpgSigner.create(tmp_path_factory.mktemp("gpg-signer"))
    yield signer
    signer.stop()


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    up = Upstream.create(tmp_path / "up")
    up.commit({"pullnix.yaml": "v1\n"}, "first")
    return up


def make_source(
    tmp_path: Path, upstream: Upstream, state: str = "state", **source: object
) -> GitSource:
    config = SourceConfig(urls=(upstream.file_url,), **source)  # type: ignore[arg-type]
    return GitSource(
        config, tmp_path / state, tmp_path / "helper", tmp_path / "current-system", retry=FAST
    )


def trust_ssh(tmp_path: Path, *signers: SshSigner) -> Path:
    path = tmp_path / "allowed_signers"
    path.write_text("".join(s.allowed_signers_line() for s in signers))
    return path


# ------------------------------------------------------------------ signatures


def test_without_trust_roots_nothing_is_required(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream)
    tip = source.sync().tip_sha
    assert source.verify(tip) == Verified(tip, None, "none")


def test_unsigned_commit_is_refused_when_signers_are_configured(
    tmp_path: Path, upstream: Upstream, ssh_signer: SshSigner
) -> None:
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    tip = source.sync().tip_sha
    with pytest.raises(TerminalError) as err:
        source.verify(tip)
    assert err.value.reason == "SignatureRefused"
    assert "unsigned" in err.value.message
    assert tip in err.value.message


def test_ssh_signed_by_an_allowed_key_is_verified_with_its_principal(
    tmp_path: Path, upstream: Upstream, ssh_signer: SshSigner
) -> None:
    signed = upstream.commit({"pullnix.yaml": "v2\n"}, ssh_signer=ssh_signer)
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    assert source.sync().tip_sha == signed
    assert source.verify(signed) == Verified(signed, "ci@example.org", "ssh")


def test_ssh_signed_by_an_unknown_key_is_refused_as_untrusted_signer(
    tmp_path: Path, upstream: Upstream, ssh_signer: SshSigner
) -> None:
    stranger = SshSigner.create(tmp_path / "stranger", "mallory@example.org")
    signed = upstream.commit(ssh_signer=stranger)
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    source.sync()
    with pytest.raises(TerminalError, match="untrusted signer") as err:
        source.verify(signed)
    assert err.value.reason == "SignatureRefused"


def test_ssh_signature_that_does_not_match_the_commit_is_a_bad_signature(
    tmp_path: Path, upstream: Upstream, ssh_signer: SshSigner
) -> None:
    signed = upstream.commit({"f": "original"}, ssh_signer=ssh_signer)
    raw = upstream.git("cat-file", "commit", signed)
    forged = raw.replace("change", "forged change", 1)
    forged_sha = git(
        "hash-object", "-t", "commit", "-w", "--stdin", cwd=upstream.work, input=forged.encode()
    ).strip()
    upstream.git("update-ref", "refs/heads/main", forged_sha)
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    assert source.sync().tip_sha == forged_sha
    with pytest.raises(TerminalError, match="bad signature"):
        source.verify(forged_sha)


def test_gpg_signed_by_a_key_in_the_keyring_is_verified(
    tmp_path: Path, upstream: Upstream, gpg_signer: GpgSigner
) -> None:
    signed = upstream.commit(gpg_signer=gpg_signer)
    source = make_source(tmp_path, upstream, gpg_keyring=gpg_signer.keyring)
    source.sync()
    verified = source.verify(signed)
    assert verified.method == "openpgp"
    assert verified.signer is not None
    assert gpg_signer.fingerprint in verified.signer
    assert "ci@example.org" in verified.signer


def test_gpg_signed_by_a_key_not_in_the_keyring_is_refused(
    tmp_path: Path, upstream: Upstream, gpg_signer: GpgSigner
) -> None:
    stranger = GpgSigner.create(tmp_path / "stranger", "Mallory <mallory@example.org>")
    try:
        signed = upstream.commit(gpg_signer=stranger)
    finally:
        stranger.stop()
    source = make_source(tmp_path, upstream, gpg_keyring=gpg_signer.keyring)
    source.sync()
    with pytest.raises(TerminalError, match="untrusted signer") as err:
        source.verify(signed)
    assert err.value.reason == "SignatureRefused"


def test_gpg_signed_commit_is_refused_when_only_ssh_is_trusted(
    tmp_path: Path, upstream: Upstream, gpg_signer: GpgSigner, ssh_signer: SshSigner
) -> None:
    signed = upstream.commit(gpg_signer=gpg_signer)
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    source.sync()
    with pytest.raises(TerminalError, match="signed with openpgp, but this machine trusts only"):
        source.verify(signed)


# ------------------------------------------------------------------ downgrade protection


def test_fast_forward_is_accepted(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream)
    applied = source.sync().tip_sha
    new = upstream.commit()
    assert source.sync().tip_sha == new
    assert source.accept_tip(new, applied).sha == new
    assert source.accept_tip(applied, applied).sha == applied


def test_force_push_to_an_older_commit_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    old = upstream.head()
    source = make_source(tmp_path, upstream)
    source.sync()
    applied = upstream.commit()
    source.sync()
    upstream.reset_branch(old)
    moved_back = source.sync()
    assert (moved_back.tip_sha, moved_back.fetched) == (old, False)  # had it: no pack
    assert str(source.repo().references["refs/heads/main"].target) == old
    with pytest.raises(TerminalError) as err:
        source.accept_tip(old, applied)
    assert err.value.reason == "DowngradeRefused"
    assert applied in err.value.message
    assert "allow_downgrade" in err.value.message


def test_unrelated_history_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream)
    applied = source.sync().tip_sha
    unrelated = upstream.orphan()
    assert source.sync().tip_sha == unrelated
    with pytest.raises(TerminalError, match="does not descend") as err:
        source.check_downgrade(unrelated, applied)
    assert err.value.reason == "DowngradeRefused"


def test_allow_downgrade_lets_an_older_commit_through(tmp_path: Path, upstream: Upstream) -> None:
    old = upstream.head()
    applied = upstream.commit()
    upstream.reset_branch(old)
    source = make_source(tmp_path, upstream, allow_downgrade=True)
    source.sync()
    source.check_downgrade(old, applied)


def _running_system(tmp_path: Path, name: str) -> Path:
    store_path = tmp_path / "store" / name
    store_path.mkdir(parents=True)
    (tmp_path / "current-system").symlink_to(store_path)
    return store_path


def test_lost_state_dir_still_refuses_via_the_helper_records(
    tmp_path: Path, upstream: Upstream
) -> None:
    old = upstream.head()
    applied = upstream.commit()
    store_path = _running_system(tmp_path, "aaaa-nixos-system")
    append_committed(
        tmp_path / "helper",
        CommittedGeneration(7, str(store_path), applied, "2026-01-01T00:00:00Z"),
    )
    upstream.reset_branch(old)
    source = make_source(tmp_path, upstream, state="fresh-state")  # nothing recorded here
    assert source.sync().tip_sha == old
    with pytest.raises(TerminalError) as err:
        source.accept_tip(old, last_applied=None)
    assert err.value.reason == "DowngradeRefused"
    assert "recorded by the helper" in err.value.message
    assert json.loads((tmp_path / "helper" / "generations.json").read_text())  # untouched


def test_lost_state_dir_refuses_via_the_systems_configuration_revision(
    tmp_path: Path, upstream: Upstream
) -> None:
    old = upstream.head()
    applied = upstream.commit()
    store_path = _running_system(tmp_path, "bbbb-nixos-system")
    (store_path / "configuration-revision").write_text(applied + "\n")
    upstream.reset_branch(old)
    source = make_source(tmp_path, upstream)
    source.sync()
    with pytest.raises(TerminalError, match="configuration-revision") as err:
        source.check_downgrade(old, None)
    assert err.value.reason == "DowngradeRefused"
    new = upstream.commit()  # pushing on top of the old commit does not help ...
    source.sync()
    with pytest.raises(TerminalError):
        source.check_downgrade(new, None)
    upstream.reset_branch(applied)  # ... building on the applied one does
    on_top = upstream.commit()
    source.sync()
    source.check_downgrade(on_top, None)


def test_a_dirty_configuration_revision_does_not_anchor_anything(
    tmp_path: Path, upstream: Upstream
) -> None:
    store_path = _running_system(tmp_path, "cccc-nixos-system")
    (store_path / "configuration-revision").write_text("dirty\n")
    source = make_source(tmp_path, upstream)
    source.check_downgrade(source.sync().tip_sha, None)


def _hotfix_pinned(tmp_path: Path, upstream: Upstream) -> tuple[str, str, str]:
    """(base, hotfix tagged `hotfix-1` on a side branch, the tip on main that pins it)."""
    base = upstream.head()
    upstream.git("checkout", "-q", "-b", "hotfix")
    hotfix = upstream.commit({"hotfix": "1"})
    upstream.tag("hotfix-1", hotfix)
    upstream.git("checkout", "-q", "main")
    carrier = upstream.commit({"pullnix.yaml": "revision: hotfix-1\n"})
    return base, hotfix, carrier


def test_a_pin_off_the_branch_is_judged_by_the_tip_that_carried_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    base, hotfix, carrier = _hotfix_pinned(tmp_path, upstream)
    source = make_source(tmp_path, upstream)
    source.sync()
    source.check_downgrade(carrier, hotfix, applied_source=carrier)  # the same tip again
    on_top = upstream.commit({"pullnix.yaml": "v3\n"})  # the pin dropped
    source.sync()
    source.check_downgrade(on_top, hotfix, applied_source=carrier)
    with pytest.raises(TerminalError) as err:  # the pinned commit alone is not an ancestor
        source.check_downgrade(carrier, hotfix)
    assert err.value.reason == "DowngradeRefused"
    with pytest.raises(TerminalError):  # force-pushed back to before the carrier
        source.check_downgrade(base, hotfix, applied_source=carrier)


def test_a_tip_pinning_the_running_revision_is_no_downgrade_of_it(
    tmp_path: Path, upstream: Upstream
) -> None:
    _, hotfix, carrier = _hotfix_pinned(tmp_path, upstream)
    store_path = _running_system(tmp_path, "dddd-nixos-system")
    append_committed(
        tmp_path / "helper", CommittedGeneration(3, str(store_path), hotfix, "2026-01-01T00:00:00Z")
    )
    source = make_source(tmp_path, upstream, state="fresh-state")  # the agent's record lost
    source.sync()
    pin = source.read_file(carrier, "pullnix.yaml").decode().split(": ")[1].strip()
    assert pin == "hotfix-1"
    source.check_downgrade(carrier, None, pin=pin)
    with pytest.raises(TerminalError):  # pins nothing: still refused
        source.check_downgrade(carrier, None, pin="")
    with pytest.raises(TerminalError):  # pins what cannot be resolved: still refused
        source.check_downgrade(carrier, None, pin="no-such-tag")
    dropped = upstream.commit({"pullnix.yaml": "v3\n"})
    source.sync()
    with pytest.raises(TerminalError) as err:  # who carried the hotfix is unknown here
        source.check_downgrade(dropped, None, pin="")
    assert "recorded by the helper" in err.value.message


def test_the_helpers_record_of_the_source_tip_anchors_the_check(
    tmp_path: Path, upstream: Upstream
) -> None:
    base, hotfix, carrier = _hotfix_pinned(tmp_path, upstream)
    store_path = _running_system(tmp_path, "eeee-nixos-system")
    append_committed(
        tmp_path / "helper",
        CommittedGeneration(
            3, str(store_path), hotfix, "2026-01-01T00:00:00Z", source_revision=carrier
        ),
    )
    recorded = json.loads((tmp_path / "helper" / "generations.json").read_text())
    assert recorded["generations"][-1]["sourceRevision"] == carrier
    dropped = upstream.commit({"pullnix.yaml": "v3\n"})
    source = make_source(tmp_path, upstream, state="fresh-state")
    source.sync()
    source.check_downgrade(dropped, None)
    upstream.reset_branch(base)
    source.sync()
    with pytest.raises(TerminalError) as err:
        source.check_downgrade(base, None)
    assert carrier in err.value.message


# ------------------------------------------------------------------ pins


def test_pin_to_an_older_commit_is_a_deliberate_rollback(
    tmp_path: Path, upstream: Upstream
) -> None:
    old = upstream.head()
    applied = upstream.commit({"pullnix.yaml": "v2\n"})
    tip_sha = upstream.commit({"pullnix.yaml": f"revision: {old[:12]}\n"})
    source = make_source(tmp_path, upstream)
    source.sync()
    tip = source.accept_tip(tip_sha, applied)
    assert source.resolve(tip.sha, old[:12]) == old
    accepted = source.accept_pin(tip, old)
    assert (accepted.target.sha, accepted.ref, accepted.pin) == (old, "refs/heads/main", old)
    assert source.accept_pin(tip, "").target == tip


def test_pinned_tag_off_the_branch_is_fetched_and_given_a_ref(
    tmp_path: Path, upstream: Upstream
) -> None:
    source = make_source(tmp_path, upstream)
    source.sync()
    base = upstream.head()
    upstream.git("checkout", "-q", "-b", "hotfix")
    hotfix = upstream.commit({"hotfix": "1"})
    upstream.tag("v1.0.1", hotfix)
    upstream.git("checkout", "-q", "main")
    tip = source.accept_tip(source.sync().tip_sha, base)
    assert source.repo().get(hotfix) is None
    accepted = source.accept_pin(tip, "v1.0.1")
    assert accepted.target.sha == hotfix
    assert accepted.ref == PINNED_REF
    assert str(source.repo().references[PINNED_REF].target) == hotfix
    assert source.repo().references.get("refs/tags/v1.0.1") is not None


def test_pinned_commit_off_the_branch_is_fetched_by_id(tmp_path: Path, upstream: Upstream) -> None:
    upstream.git("checkout", "-q", "-b", "side")
    side = upstream.commit({"side": "1"})
    upstream.git("checkout", "-q", "main")
    source = make_source(tmp_path, upstream)
    tip = source.sync().tip_sha
    assert source.resolve(tip, side) == side


def test_pinned_commit_must_be_signed_too(
    tmp_path: Path, upstream: Upstream, ssh_signer: SshSigner
) -> None:
    unsigned_old = upstream.head()
    signed_tip = upstream.commit(ssh_signer=ssh_signer)
    source = make_source(tmp_path, upstream, allowed_signers_file=trust_ssh(tmp_path, ssh_signer))
    source.sync()
    tip = source.accept_tip(signed_tip, None)
    assert tip.signer == "ci@example.org"
    with pytest.raises(TerminalError, match="unsigned") as err:
        source.accept_pin(tip, unsigned_old)
    assert err.value.reason == "SignatureRefused"


def test_pin_that_names_nothing_is_terminal(tmp_path: Path, upstream: Upstream) -> None:
    source = make_source(tmp_path, upstream)
    tip = source.sync().tip_sha
    with pytest.raises(TerminalError, match="'no-such-tag'") as err:
        source.resolve(tip, "no-such-tag")
    assert err.value.reason == "RevisionMissing"
