"""Retention deletes old generations of a real profile with nix-env, keeping protected ones."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.helper.config import SystemConfig
from reconciler.nix.errors import NixMissing
from reconciler.nix.observe import observe_system
from reconciler.nix.retention import apply_retention
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    make_sandbox,
    set_profile,
)

pytestmark = pytest.mark.nix


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path)


@pytest.fixture
def fleet(tmp_path: Path, sandbox: Sandbox) -> FleetRepo:
    return init_fleet_repo(tmp_path, sandbox)


def config(sandbox: Sandbox, keep: int) -> SystemConfig:
    return SystemConfig(profile=sandbox.profile, current_system=sandbox.current_system,
                        booted_system=sandbox.booted_system, keep_generations=keep)


def six_generations(fleet: FleetRepo, sandbox: Sandbox) -> list[str]:
    paths = [build_toplevel(fleet.flake_ref(commit_fleet(fleet, version=str(v))), "edge-01")
             for v in range(1, 7)]
    install_system(sandbox, paths[0])  # booted into generation 1
    for path in paths[1:]:
        set_profile(sandbox, path)
    subprocess.run([f"{paths[5]}/bin/switch-to-configuration", "switch"], check=True)
    return paths


def test_keeps_the_newest_and_the_booted_generation(fleet: FleetRepo, sandbox: Sandbox) -> None:
    paths = six_generations(fleet, sandbox)
    plan = apply_retention(config(sandbox, keep=2))
    assert plan.delete == (2, 3, 4)
    observed = observe_system(config(sandbox, keep=2))
    assert [g.number for g in observed.generations] == [1, 5, 6]
    assert observed.generation(1) is not None
    assert observed.generation(1).store_path == paths[0]  # type: ignore[union-attr]
    assert observed.current_generation == 6
    assert apply_retention(config(sandbox, keep=2)).delete == ()  # idempotent


def test_keeps_the_current_generation_after_a_rollback_and_pinned_ones(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    six_generations(fleet, sandbox)
    subprocess.run(["nix-env", "-p", str(sandbox.profile), "--switch-generation", "3"],
                   check=True, capture_output=True)
    plan = apply_retention(config(sandbox, keep=1), pinned=(2,))
    # 6 newest; 3 current; 1 booted; 2 pinned; the running system is generation 6
    assert plan.delete == (4, 5)
    assert [g.number for g in observe_system(config(sandbox, keep=1)).generations] == [1, 2, 3, 6]


def test_retention_without_nix_says_so(
    fleet: FleetRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    six_generations(fleet, sandbox)
    with pytest.raises(NixMissing):
        apply_retention(config(sandbox, keep=1), search_path=str(tmp_path))
