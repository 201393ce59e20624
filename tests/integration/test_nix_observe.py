"""Observing a real Nix profile and the current/booted system links."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from reconciler.common.config import SystemConfig
from reconciler.nix.observe import list_generations, observe_system, resolve_store_path
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    boot_into,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    set_profile,
)

pytestmark = pytest.mark.nix


@pytest.fixture
def fleet(tmp_path: Path, sandbox: Sandbox) -> FleetRepo:
    return init_fleet_repo(tmp_path, sandbox)


def system_config(sandbox: Sandbox) -> SystemConfig:
    return SystemConfig(
        profile=sandbox.profile,
        current_system=sandbox.current_system,
        booted_system=sandbox.booted_system,
        keep_generations=3,
    )


def versions(fleet: FleetRepo, *names: str) -> list[str]:
    return [
        build_toplevel(fleet.flake_ref(commit_fleet(fleet, version=v)), "edge-01") for v in names
    ]


def test_an_empty_machine_observes_as_nothing(sandbox: Sandbox) -> None:
    observed = observe_system(system_config(sandbox))
    assert observed.generations == ()
    assert observed.current_generation is None
    assert observed.profile_system is None
    assert observed.current_system is None
    assert observed.booted_system is None


def test_generations_after_several_profile_sets(fleet: FleetRepo, sandbox: Sandbox) -> None:
    v1, v2, v3 = versions(fleet, "1", "2", "3")
    install_system(sandbox, v1)
    set_profile(sandbox, v2)
    set_profile(sandbox, v3)
    observed = observe_system(system_config(sandbox))
    assert [(g.number, g.store_path) for g in observed.generations] == [(1, v1), (2, v2), (3, v3)]
    assert observed.current_generation == 3
    assert observed.profile_system == v3
    assert [g.current for g in observed.generations] == [False, False, True]
    assert observed.current_system == v1
    assert observed.booted_system == v1
    assert observed.generation(2) is not None
    assert observed.generation_of(v2) == observed.generation(2)
    created = [g.created for g in observed.generations]
    assert created == sorted(created)


def test_rollback_moves_the_current_generation(fleet: FleetRepo, sandbox: Sandbox) -> None:
    v1, v2 = versions(fleet, "1", "2")
    install_system(sandbox, v1)
    set_profile(sandbox, v2)
    subprocess.run(
        ["nix-env", "-p", str(sandbox.profile), "--rollback"], check=True, capture_output=True
    )
    observed = observe_system(system_config(sandbox))
    assert observed.current_generation == 1
    assert observed.profile_system == v1
    assert len(observed.generations) == 2


def test_current_and_booted_system_follow_activation_and_reboot(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    v1, v2 = versions(fleet, "1", "2")
    install_system(sandbox, v1)
    subprocess.run([f"{v2}/bin/switch-to-configuration", "switch"], check=True)
    observed = observe_system(system_config(sandbox))
    assert (observed.current_system, observed.booted_system) == (v2, v1)
    boot_into(sandbox)
    observed = observe_system(system_config(sandbox))
    assert (observed.current_system, observed.booted_system) == (v2, v2)


def test_store_paths_resolve_through_chains_of_links(
    fleet: FleetRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    [v1] = versions(fleet, "1")
    install_system(sandbox, v1)
    chain = tmp_path / "chain"
    chain.symlink_to(sandbox.current_system)
    assert resolve_store_path(chain) == v1
    assert resolve_store_path(sandbox.profile) == v1
    assert resolve_store_path(tmp_path / "nothing") is None
    assert resolve_store_path(Path(v1, "kernel")) == os.readlink(Path(v1, "kernel"))


def test_unrelated_and_dangling_links_are_not_generations(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    [v1] = versions(fleet, "1")
    install_system(sandbox, v1)
    profiles = sandbox.profile.parent
    (profiles / "system-9-link").symlink_to("/nix/store/does-not-exist")
    (profiles / "other-2-link").symlink_to(v1)
    (profiles / "system-x-link").symlink_to(v1)
    assert [g.number for g in list_generations(sandbox.profile)] == [1]
