"""Facts about a new system against the running and booted ones, from real toplevels."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.nix.facts import closure_diff, gather_facts, parse_diff_closures
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
)


@pytest.fixture
def fleet(tmp_path: Path, sandbox: Sandbox) -> FleetRepo:
    return init_fleet_repo(tmp_path, sandbox)


def system(fleet: FleetRepo, **knobs: Any) -> str:
    return build_toplevel(fleet.flake_ref(commit_fleet(fleet, **knobs)), "edge-01")


@pytest.mark.nix
def test_no_reboot_when_only_the_configuration_changes(fleet: FleetRepo) -> None:
    booted, new = system(fleet, version="1"), system(fleet, version="2")
    facts = gather_facts(new, running_system=booted, booted_system=booted)
    assert facts.reboot_components == ()
    assert not facts.reboot_needed
    assert facts.version == "2"


@pytest.mark.nix
@pytest.mark.parametrize(
    ("knob", "component"),
    [("kernel", "kernel"), ("initrd", "initrd"), ("modules", "kernel-modules")],
)
def test_a_changed_boot_component_needs_a_reboot(
    fleet: FleetRepo, knob: str, component: str
) -> None:
    booted = system(fleet, version="1")
    new = system(fleet, version="2", **{knob: "changed-" + component})
    facts = gather_facts(new, running_system=booted, booted_system=booted)
    assert facts.reboot_components == (component,)
    assert facts.reboot_needed


@pytest.mark.nix
def test_reboot_is_judged_against_the_booted_system_not_the_running_one(
    fleet: FleetRepo,
) -> None:
    booted = system(fleet, version="1", kernel="6.1")
    running = system(fleet, version="2", kernel="6.6")  # switched to, not rebooted into
    new = system(fleet, version="3", kernel="6.6")
    assert gather_facts(new, running_system=running, booted_system=booted).reboot_needed
    back = system(fleet, version="4", kernel="6.1")
    assert not gather_facts(back, running_system=running, booted_system=booted).reboot_needed


@pytest.mark.nix
def test_differing_inhibitors_turn_switch_into_boot(fleet: FleetRepo) -> None:
    running = system(fleet, version="1", inhibitors="dbus")
    new = system(fleet, version="2", inhibitors="dbus-broker")
    facts = gather_facts(new, running_system=running, booted_system=running)
    plan = facts.activation("switch")
    assert plan.action == "boot"
    assert plan.reason == "SwitchInhibited"
    assert "dbus-broker" in plan.message
    same = system(fleet, version="3", inhibitors="dbus-broker")
    assert (
        gather_facts(same, running_system=new, booted_system=running).activation("switch").action
        == "switch"
    )


@pytest.mark.nix
def test_inhibitors_present_in_only_one_system_also_inhibit(fleet: FleetRepo) -> None:
    running = system(fleet, version="1")
    new = system(fleet, version="2", inhibitors="systemd")
    facts = gather_facts(new, running_system=running, booted_system=running)
    assert facts.running_inhibitors is None
    assert facts.new_inhibitors == "systemd"
    assert facts.activation("test").action == "boot"


@pytest.mark.nix
def test_closure_diff_lists_changed_packages_and_keeps_the_text(fleet: FleetRepo) -> None:
    old = system(fleet, version="1", kernel="6.1.0")
    new = system(fleet, version="2", kernel="6.6.1")
    diff = closure_diff(old, new)
    kernel = next(c for c in diff.changes if c.name == "fixture-linux")
    assert kernel.before == ("6.1.0",)
    assert kernel.after == ("6.6.1",)
    assert "fixture-linux" in diff.text
    assert gather_facts(new, running_system=old, booted_system=old).closure_diff == diff


@pytest.mark.nix
def test_without_running_or_booted_system_there_is_nothing_to_compare(fleet: FleetRepo) -> None:
    new = system(fleet, revision="deadbeef")
    facts = gather_facts(new, running_system=None, booted_system=None)
    assert facts.closure_diff is None
    assert not facts.reboot_needed
    assert facts.revision == "deadbeef"


DIFF_TEXT = (
    "firefox: 120.0 \u2192 121.0, +1024.0 KiB\n"
    "linux: 6.1.1, 6.1.2 \u2192 6.6.1\n"
    "new-tool: \u2205 \u2192 1.0, +12.5 KiB\n"
    "old-tool: 2.0 \u2192 \u2205, -20.0 KiB\n"
    "etc: \u03b5 \u2192 \u03b5, +9.0 KiB\n"
    "glibc: -8.5 KiB\n"
    "\x1b[31;1mcolour\x1b[0m: 1 \u2192 2\n"
    "not a change line\n"
)


def test_diff_closures_output_parses_into_entries() -> None:
    changes = {c.name: c for c in parse_diff_closures(DIFF_TEXT)}
    assert changes["firefox"].before == ("120.0",)
    assert changes["firefox"].after == ("121.0",)
    assert changes["firefox"].size_delta == 1024 * 1024
    assert changes["linux"].before == ("6.1.1", "6.1.2")
    assert changes["new-tool"].added
    assert changes["old-tool"].removed
    assert changes["old-tool"].size_delta == -20 * 1024
    assert changes["etc"].before == ("",)
    assert changes["glibc"].before == changes["glibc"].after == ()
    assert changes["glibc"].size_delta == round(-8.5 * 1024)
    assert changes["colour"].after == ("2",)
    assert len(changes) == 7
