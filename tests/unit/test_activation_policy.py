"""Switch inhibitors turn a live activation into a boot; boot components decide reboots."""

from __future__ import annotations

import pytest

from reconciler.core.activation import (
    boot_components_changed,
    normalise_inhibitors,
    plan_activation,
)


@pytest.mark.parametrize(
    ("requested", "running", "new", "action", "reason"),
    [
        ("switch", None, None, "switch", None),
        ("switch", "dbus\n", "dbus", "switch", None),  # whitespace is not a difference
        ("switch", "a\n\nb\n", "a\nb", "switch", None),
        ("switch", "dbus", "dbus-broker", "boot", "SwitchInhibited"),
        ("switch", None, "dbus", "boot", "SwitchInhibited"),  # present in either is enough
        ("switch", "dbus", None, "boot", "SwitchInhibited"),
        ("test", "dbus", "dbus-broker", "boot", "SwitchInhibited"),
        ("test", None, None, "test", None),
        ("boot", "dbus", "dbus-broker", "boot", None),  # boot never activates live
    ],
)
def test_inhibitors_decide_the_action(
    requested: str, running: str | None, new: str | None, action: str, reason: str | None
) -> None:
    plan = plan_activation(requested, running, new)
    assert plan.requested == requested
    assert plan.action == action
    assert plan.reason == reason
    assert plan.changed == (action != requested)


def test_an_inhibited_switch_says_what_differs_and_what_happens() -> None:
    plan = plan_activation("switch", "dbus", "dbus-broker")
    assert "running: dbus" in plan.message
    assert "new: dbus-broker" in plan.message
    assert "next reboot" in plan.message


def test_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown activation action 'reboot'"):
        plan_activation("reboot", None, None)


def test_inhibitor_text_normalises_to_lines() -> None:
    assert normalise_inhibitors(None) is None
    assert normalise_inhibitors("") == ()
    assert normalise_inhibitors(" a \n\nb\n") == ("a", "b")


KERNEL, INITRD, MODULES = "/nix/store/k", "/nix/store/i", "/nix/store/m"


@pytest.mark.parametrize(
    ("booted", "new", "changed"),
    [
        ({"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
         {"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES}, ()),
        ({"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
         {"kernel": KERNEL + "2", "initrd": INITRD, "kernel-modules": MODULES}, ("kernel",)),
        ({"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
         {"kernel": KERNEL, "initrd": INITRD + "2", "kernel-modules": MODULES + "2"},
         ("initrd", "kernel-modules")),
        ({"kernel": KERNEL, "initrd": None}, {"kernel": KERNEL, "initrd": INITRD}, ("initrd",)),
        ({}, {}, ()),
    ],
)
def test_boot_components_that_differ_need_a_reboot(
    booted: dict[str, str | None], new: dict[str, str | None], changed: tuple[str, ...]
) -> None:
    assert boot_components_changed(booted, new) == changed
