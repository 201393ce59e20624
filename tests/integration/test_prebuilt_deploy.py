"""Prebuilt systems end to end: `pullnix publish` in "CI", a signed cache served by nginx,
a machine whose store lacks the system, and an agent that fetches it without evaluating."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

from tests.support.agentmachine import fake_machine
from tests.support.binarycache import delete_path, generate_key, in_store, served_cache, start, stop
from tests.support.nixfixture import commit_fleet, read_calls
from tests.support.prebuilt import (
    LOCK,
    commit_deploy,
    configure_nix,
    narinfo_name,
    prebuilt_spec,
    publish,
    read_lock,
)


def test_a_published_system_is_fetched_from_the_signed_cache_and_deployed_without_evaluation(
    tmp_path: Path,
):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine, served_cache(tmp_path) as cache:
        built_from = commit_fleet(machine.repo, version="2")
        ci = publish(machine, key, f"file://{cache.root}/fleet", "--hosts", "edge-*", "--json")
        assert ci.returncode == 0, ci.stderr
        assert "publish: edge-01: building nixosConfigurations.edge-01" in ci.stderr
        assert "publish: edge-01: done /nix/store/" in ci.stderr
        assert re.search(r"\(\d+\.\d [KM]iB closure, \d+\.\d [KM]iB toplevel\)", ci.stderr)
        report = json.loads(ci.stdout)
        assert report["failed"] == []
        lock = read_lock(machine)
        assert lock["kind"] == "SystemLock"
        assert lock["sourceRevision"] == built_from
        system = lock["hosts"]["edge-01"]["storePath"]
        assert lock["hosts"]["edge-01"]["closureSize"] == report["hosts"]["edge-01"]["closureSize"]
        narinfo = (cache.root / "fleet" / narinfo_name(system)).read_text()
        assert f"Sig: {key.name}:" in narinfo

        # The deploy commit carries the lock and a flake that throws when evaluated.
        deploy = commit_deploy(machine)
        delete_path(system)  # this machine's store does not hold the system
        configure_nix(machine, [cache.url("fleet")], [key.public])

        result = machine.reconcile()
        assert result.returncode == 0, result.stdout + result.stderr
        assert machine.current() == system
        assert in_store(system)
        status = machine.status()["status"]
        assert status["lastAppliedRevision"] == deploy
        assert machine.condition("Ready")["status"] == "True"
        calls = read_calls(machine.sandbox)
        assert [c["action"] for c in calls][-2:] == ["test", "boot"], calls
        requested = [path for path, code, _ in cache.requests() if code == 200]
        assert f"/fleet/{narinfo_name(system)}" in requested
        nar = [p for p in requested if p.startswith("/fleet/nar/")]
        assert nar, cache.requests()
        assert "evaluated on the machine" not in result.stdout + result.stderr


def test_a_cache_that_is_down_is_retried_and_the_deploy_goes_on_when_it_is_back(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine, served_cache(tmp_path) as cache:
        commit_fleet(machine.repo, version="2")
        assert publish(machine, key, f"file://{cache.root}/fleet").returncode == 0
        system = read_lock(machine)["hosts"]["edge-01"]["storePath"]
        commit_deploy(machine)
        delete_path(system)
        configure_nix(machine, [cache.url("fleet")], [key.public])
        before = machine.current()

        stop(cache)
        down = machine.reconcile()
        assert down.returncode == 1, down.stdout + down.stderr  # an error, retried with backoff
        ready = machine.condition("Ready")
        assert (ready["status"], ready["reason"]) == ("False", "CacheUnavailable")
        assert cache.url("fleet") in ready["message"]
        assert machine.current() == before
        assert not in_store(system)

        start(cache, tmp_path / "nginx")
        assert machine.reconcile().returncode == 0
        assert machine.current() == system


def test_publish_exits_1_naming_the_hosts_that_failed_and_writes_no_lock(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine:
        commit_fleet(
            machine.repo,
            hosts={"edge-01": {}, "edge-02": {"fail_build": True}},
            version="2",
        )
        ci = publish(machine, key, f"file://{tmp_path}/cache", "--json")
        assert ci.returncode == 1
        assert "publish: edge-02: failed:" in ci.stderr
        assert "publish: failed: edge-02;" in ci.stderr
        assert json.loads(ci.stdout)["failed"] == ["edge-02"]
        assert not (machine.repo.worktree / LOCK).exists()

        only = publish(machine, key, f"file://{tmp_path}/cache", "--hosts", "edge-01,server-*")
        assert only.returncode == 0, only.stderr
        assert sorted(read_lock(machine)["hosts"]) == ["edge-01"]


def test_publish_validates_the_desired_state_first(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine:
        bad = (
            "apiVersion: pullnix.dev/v1alpha1\nkind: NixOSDeployment\nmetadata: {name: f}\n"
            "spec:\n  configuration: {flake: x, prebuilt: {}}\n"
        )
        sha = commit_fleet(machine.repo, files={"pullnix.yaml": bad})
        ci = publish(machine, key, f"file://{tmp_path}/cache")
        assert ci.returncode == 1
        assert "only one of flake, classic, prebuilt may be" in ci.stderr
        assert f"pullnix.yaml@{sha[:12]} is not valid; nothing was built" in ci.stderr
        assert "building" not in ci.stderr


def test_publish_with_no_host_to_publish_or_a_bad_key_says_so_and_writes_no_lock(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    cache = f"file://{tmp_path}/cache"
    with fake_machine(tmp_path) as machine:
        commit_fleet(machine.repo, version="2")
        none = publish(machine, key, cache, "--hosts", "web-*")
        assert none.returncode == 1
        assert "pullnix publish: no host of edge-01 matches --hosts web-*" in none.stderr

        corrupt = tmp_path / "corrupt.key"
        corrupt.write_text("not a key\n")
        bad = publish(machine, replace(key, secret=corrupt), cache, "--hosts", "edge-01")
        assert bad.returncode == 1
        assert f"with {corrupt} failed: secret key is corrupt" in bad.stderr
        assert not (machine.repo.worktree / LOCK).exists()

        sha = commit_fleet(
            machine.repo, files={"flake.nix": "{ outputs = _: { nixosConfigurations = { }; }; }"}
        )
        empty = publish(machine, key, cache)
        assert empty.returncode == 1
        assert (
            f"pullnix publish: the flake at {sha[:12]} has no nixosConfigurations: nothing to "
            "publish" in empty.stderr
        ), empty.stderr
        assert not (machine.repo.worktree / LOCK).exists()


def test_publish_that_cannot_write_the_lock_says_so_without_a_traceback(tmp_path: Path):
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    with fake_machine(tmp_path) as machine:
        commit_fleet(machine.repo, version="2")
        in_the_way = machine.repo.worktree / LOCK  # a directory where the lock goes
        (in_the_way / "x").mkdir(parents=True)
        ci = publish(machine, key, f"file://{tmp_path}/cache", "--hosts", "edge-01")
        assert ci.returncode == 1
        assert "Traceback" not in ci.stderr, ci.stderr
        assert (
            "pullnix publish: every host was published, but the lock could not be written to "
            f"{in_the_way}: Is a directory" in ci.stderr
        ), ci.stderr
        assert sorted(p.name for p in in_the_way.iterdir()) == ["x"]
        assert not list(machine.repo.worktree.glob(f".{LOCK}.*"))


def test_publish_refuses_hosts_that_read_different_locks_before_building(tmp_path: Path):
    """A host whose override moves its lockFile cannot share the lock one run writes: the
    run names each group, builds nothing; one group at a time gets its own lock."""
    key = generate_key(tmp_path / "keys", "ci.example.org-1")
    cache = f"file://{tmp_path}/cache"
    with fake_machine(tmp_path) as machine:
        spec = prebuilt_spec(machine) + (
            '  hosts:\n    "edge-02":\n'
            "      configuration: {prebuilt: {lockFile: locks/edge-02.json}}\n"
        )
        commit_fleet(
            machine.repo, hosts={"edge-01": {}, "edge-02": {}}, files={"pullnix.yaml": spec}
        )
        both = publish(machine, key, cache)
        assert both.returncode == 1
        assert (
            f"the hosts read different lock files ({LOCK}: edge-01; locks/edge-02.json: "
            "edge-02); one run writes one lock" in both.stderr
        ), both.stderr
        assert "building" not in both.stderr
        assert not (machine.repo.worktree / LOCK).exists()

        one = publish(machine, key, cache, "--hosts", "edge-02")
        assert one.returncode == 0, one.stderr
        lock = json.loads((machine.repo.worktree / "locks/edge-02.json").read_text())
        assert sorted(lock["hosts"]) == ["edge-02"]
        assert not (machine.repo.worktree / LOCK).exists()
