"""The driver's parts compose into one deploy, as the controller and helper will use them:
observe, build from the mirror, gather facts, activate (the fixture), commit, prune, release."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from reconciler.common.config import SystemConfig
from reconciler.helper.retention import plan_retention
from reconciler.nix.build import BuildSettings, build_flake, held_roots, release
from reconciler.nix.facts import gather_facts
from reconciler.nix.observe import observe_system
from tests.support.nixfixture import (
    commit_fleet,
    init_fleet_repo,
    install_system,
    make_sandbox,
    read_calls,
    set_profile,
)

pytestmark = pytest.mark.nix


def test_one_deploy_end_to_end_with_an_inhibited_switch(tmp_path: Path) -> None:
    sandbox = make_sandbox(tmp_path)
    fleet = init_fleet_repo(tmp_path, sandbox, inhibitors="dbus")
    system = SystemConfig(
        profile=sandbox.profile,
        current_system=sandbox.current_system,
        booted_system=sandbox.booted_system,
        keep_generations=1,
    )
    settings = BuildSettings(gcroots_dir=sandbox.gcroots, timeout=120)

    first = build_flake(
        fleet.bare, "main", fleet.sha, "nixosConfigurations.{host}", "edge-01", settings
    )
    install_system(sandbox, first.store_path)
    release(first)

    sha = commit_fleet(fleet, version="2", inhibitors="dbus-broker", kernel="6.6")
    before = observe_system(system)
    built = build_flake(fleet.bare, "main", sha, "nixosConfigurations.{host}", "edge-01", settings)
    facts = gather_facts(built.store_path, before.current_system, before.booted_system)
    plan = facts.activation("switch")
    assert (plan.action, plan.reason) == ("boot", "SwitchInhibited")
    assert facts.reboot_components == ("kernel",)

    subprocess.run([f"{built.store_path}/bin/switch-to-configuration", plan.action], check=True)
    set_profile(sandbox, built.store_path)
    release(built)

    after = observe_system(system)
    assert after.current_generation == 2
    assert after.current_system == first.store_path  # boot does not activate
    assert [c["action"] for c in read_calls(sandbox)] == ["boot"]
    plan = plan_retention(
        [(g.number, g.store_path) for g in after.generations],
        1,
        current=after.current_generation,
        booted=after.booted_system,
        running=after.current_system,
    )
    assert plan.delete == ()  # the helper prunes nothing here: 1 is booted and running, 2 current
    assert plan.protected == ((1, "booted"),)
    assert held_roots(settings) == {}
