"""Prebuilt systems the machine must refuse: each bad input gets a clear status, and nothing
is activated (the running system, the switch calls and the store stay as they were)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from reconciler.core.errors import TransientError
from reconciler.nix.build import BuildSettings
from reconciler.nix.realise import realise_system
from tests.support.agentmachine import Machine, fake_machine
from tests.support.binarycache import (
    copy_to,
    delete_path,
    generate_key,
    in_store,
    served_cache,
    sign,
)
from tests.support.nixfixture import commit_fleet, read_calls
from tests.support.prebuilt import commit_deploy, configure_nix, lock_text, narinfo_name

pytestmark = pytest.mark.nix

SHAPED = "/nix/store/" + "0" * 32 + "-nixos-system-edge-01"


def refused(machine: Machine, reason: str) -> dict[str, str]:
    """Run a pass; assert it refused with `reason` and activated nothing; the Ready condition."""
    calls, running = read_calls(machine.sandbox), machine.current()
    result = machine.reconcile()
    assert result.returncode == 3, result.stdout + result.stderr
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", reason), ready
    assert machine.current() == running
    assert read_calls(machine.sandbox) == calls
    return ready


def test_unsigned_and_wrongly_signed_systems_are_refused(tmp_path: Path):
    trusted = generate_key(tmp_path / "keys", "ci.example.org-1")
    stranger = generate_key(tmp_path / "keys", "someone-else-1")
    with fake_machine(tmp_path) as machine, served_cache(tmp_path) as cache:
        sha = commit_fleet(machine.repo, version="2")
        system = machine.built(sha)  # built here, never signed
        copy_to(cache.root / "unsigned", system)
        sign(system, stranger)
        copy_to(cache.root / "wrong", system)
        assert "Sig:" not in (cache.root / "unsigned" / narinfo_name(system)).read_text()
        assert "Sig: someone-else-1:" in (cache.root / "wrong" / narinfo_name(system)).read_text()
        delete_path(system)

        for sub in ("unsigned", "wrong"):  # a refused commit waits for a new one: one each
            commit_deploy(machine, lock_text(sha, {"edge-01": {"storePath": system}}))
            configure_nix(machine, [cache.url(sub)], [trusted.public])
            ready = refused(machine, "UntrustedSignature")
            assert (
                f"{system} from {cache.url(sub)} is not signed by a key this machine trusts"
                in (ready["message"])
            )
            assert "ci.example.org-1" in ready["message"]
            assert machine.condition("Stalled")["reason"] == "UntrustedSignature"
            assert not in_store(system)
        narinfos = [p for p, _, _ in cache.requests() if p.endswith(narinfo_name(system))]
        assert narinfos == [f"/unsigned/{narinfo_name(system)}", f"/wrong/{narinfo_name(system)}"]


def test_malformed_locks_foreign_locks_and_missing_hosts_are_refused(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine:
        configure_nix(machine, ["http://127.0.0.1:9"], [key.public])
        base = machine.repo.sha
        cases = [
            ("{not json", "InvalidSpec", "pullnix.lock.json@{sha}: is not valid JSON (line 1"),
            (
                lock_text(base, {"edge-01": {"storePath": "/etc/shadow"}}),
                "InvalidSpec",
                "pullnix.lock.json@{sha}: hosts[\"edge-01\"].storePath: '/etc/shadow' is not a "
                "Nix store path",
            ),
            (
                lock_text(base, {"edge-02": {"storePath": SHAPED}}),
                "NotInLock",
                "has no system for host 'edge-01' (hosts: edge-02)",
            ),
            (
                lock_text("1" * 40, {"edge-01": {"storePath": SHAPED}}),
                "LockFromAnotherHistory",
                "sourceRevision 111111111111 is not an ancestor of {sha}",
            ),
        ]
        for text, reason, fragment in cases:
            sha = commit_deploy(machine, text)
            ready = refused(machine, reason)
            assert fragment.format(sha=sha[:12]) in ready["message"]
            assert machine.condition("Stalled")["reason"] == reason


def test_a_store_path_that_is_not_a_nixos_system_is_refused(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    expr = tmp_path / "not-a-system.nix"
    expr.write_text(
        f'derivation {{ name = "not-a-system"; system = builtins.currentSystem; '
        f'builder = "/bin/sh"; args = ["-c" "echo {tmp_path} > $out"]; }}\n'
    )
    with fake_machine(tmp_path) as machine, served_cache(tmp_path) as cache:
        path = subprocess.run(
            ["nix-build", str(expr), "--no-out-link"],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout.strip()
        sign(path, key)
        copy_to(cache.root / "fleet", path)
        delete_path(path)
        configure_nix(machine, [cache.url("fleet")], [key.public])
        commit_deploy(machine, lock_text(machine.repo.sha, {"edge-01": {"storePath": path}}))
        ready = refused(machine, "BuildFailed")  # as for a built result that is no system
        assert (
            f"{path} (built from the prebuilt lock entry of edge-01) is not a NixOS system"
            in (ready["message"])
        )
        # The hint is about the lock CI wrote, not spec.configuration (nothing is built here).
        assert "spec.configuration" not in ready["message"], ready["message"]
        assert "`pullnix publish` writes" in ready["message"], ready["message"]


def test_a_lock_file_that_is_missing_a_directory_or_a_symlink_is_refused_naming_lock_file(
    tmp_path: Path,
):
    """The lock is read from the commit's tree only: a symlink (even to a valid lock outside
    the repository) is not followed, and the message points at lockFile, not spec_path."""
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    outside = tmp_path / "outside.lock.json"
    with fake_machine(tmp_path) as machine:
        outside.write_text(lock_text(machine.repo.sha, {"edge-01": {"storePath": SHAPED}}))
        configure_nix(machine, ["http://127.0.0.1:9"], [key.public])
        lock = machine.repo.worktree / "pullnix.lock.json"
        shapes = {
            "missing": lambda: None,
            "a directory": lambda: (lock.mkdir(), (lock / "x").write_text("{}")),
            "a symbolic link": lambda: lock.symlink_to(outside),
        }
        shape_words = {
            "missing": "does not exist in commit",
            "a directory": "in commit",
            "a symbolic link": "in commit",
        }
        for shape, make in shapes.items():
            if lock.is_dir() and not lock.is_symlink():
                (lock / "x").unlink()
                lock.rmdir()
            else:
                lock.unlink(missing_ok=True)
            make()
            sha = commit_deploy(machine, None, revision=shape)
            ready = refused(machine, "InvalidSpec")  # tied to the commit, like a bad lock
            assert f"pullnix.lock.json {shape_words[shape]} {sha}" in ready["message"], shape
            assert "spec.configuration.prebuilt.lockFile" in ready["message"], ready["message"]
            assert "spec_path" not in ready["message"], ready["message"]


def test_a_machine_without_caches_or_keys_in_agent_toml_refuses_without_asking_any_cache(
    tmp_path: Path,
):
    """Trust roots come from agent.toml: with either list empty, Nix would fall back to
    nix.conf's (cache.nixos.org and its key by default), so nothing is fetched at all."""
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine, served_cache(tmp_path) as cache:
        lock = lock_text(machine.repo.sha, {"edge-01": {"storePath": SHAPED}})
        for caches, keys, empty in (
            ([], [key.public], "[nix] substituters"),
            ([cache.url("fleet")], [], "[nix] trusted_public_keys"),
        ):
            configure_nix(machine, caches, keys)
            sha = commit_deploy(machine, lock, revision=empty)
            ready = refused(machine, "UntrustedSignature")
            assert f"{empty} in agent.toml is empty" in ready["message"], ready["message"]
            assert f"{sha[:12]}" in ready["message"], ready["message"]
        assert cache.requests() == []


def test_a_cache_that_accepts_connections_and_never_answers_is_a_transient_timeout(
    tmp_path: Path,
):
    """The kernel accepts the TCP connection (listen, never accept) and nothing answers:
    the fetch is stopped at the build timeout and backs off as transient, never hangs."""
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        settings = BuildSettings(gcroots_dir=tmp_path / "gcroots", timeout=5)
        with pytest.raises(TransientError) as caught:
            realise_system(
                SHAPED,
                host="edge-01",
                revision="a" * 40,
                substituters=[url],
                trusted_keys=[key.public],
                settings=settings,
            )
    assert caught.value.reason == "NixTimeout", caught.value.message
    assert "did not finish within 5s and was stopped; it will be retried" in caught.value.message
    assert not list((tmp_path / "gcroots").glob("*"))
