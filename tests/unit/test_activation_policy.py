"""Switch inhibitors turn a live activation into a boot; boot components decide reboots."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.common.operation import Operation, Previous, State
from reconciler.common.protocol import ApplyRequest
from reconciler.core.activation import (
    boot_components_changed,
    installed_for_next_boot,
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
        (
            {"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
            {"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
            (),
        ),
        (
            {"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
            {"kernel": KERNEL + "2", "initrd": INITRD, "kernel-modules": MODULES},
            ("kernel",),
        ),
        (
            {"kernel": KERNEL, "initrd": INITRD, "kernel-modules": MODULES},
            {"kernel": KERNEL, "initrd": INITRD + "2", "kernel-modules": MODULES + "2"},
            ("initrd", "kernel-modules"),
        ),
        ({"kernel": KERNEL, "initrd": None}, {"kernel": KERNEL, "initrd": INITRD}, ("initrd",)),
        ({}, {}, ()),
    ],
)
def test_boot_components_that_differ_need_a_reboot(
    booted: dict[str, str | None], new: dict[str, str | None], changed: tuple[str, ...]
) -> None:
    assert boot_components_changed(booted, new) == changed


@pytest.mark.parametrize(
    ("requested", "running", "new", "trial", "confirm", "expected"),
    [
        ("switch", None, None, True, True, (True, True)),  # unchanged: as the spec says
        ("switch", None, None, False, True, (False, True)),
        ("test", None, None, True, True, (True, True)),
        # a boot, asked for or forced: a live trial would activate now (or be what the
        # inhibitors forbid), and no agent runs in the new system to confirm it before
        # the reboot
        ("boot", None, None, True, True, (False, False)),
        ("switch", "dbus", "dbus-broker", True, True, (False, False)),
        ("test", None, "dbus", True, False, (False, False)),
    ],
)
def test_a_boot_asks_the_helper_for_no_trial_and_no_confirmation(
    requested: str,
    running: str | None,
    new: str | None,
    trial: bool,
    confirm: bool,
    expected: tuple[bool, bool],
) -> None:
    assert plan_activation(requested, running, new).helper_request(trial, confirm) == expected


OLD, NEW, OTHER = ("/nix/store/" + c * 32 + "-nixos-system" for c in "abc")


def boot_op(**changes: Any) -> Operation:
    """The helper's newest finished operation, described by its JSON form's fields."""
    op: dict[str, Any] = {
        "kind": "apply",
        "state": "Succeeded",
        "storePath": NEW,
        "request": {"action": "boot", "trial": False},
        "previous": {"currentSystem": OLD},
    }
    for key, value in changes.items():
        if key in ("action", "trial"):
            op["request"] = {**op["request"], key: value}
        else:
            op[key] = value
    request = op["request"]
    return Operation(
        id="op-1",
        kind=op["kind"],
        request=ApplyRequest(
            store_path=op["storePath"],
            action=request["action"],
            trial=request.get("trial", True),
        ),
        previous=Previous(op["previous"]["currentSystem"], None, None),
        state=State(op["state"]),
        created_at="2026-11-25T18:31:39.566851Z",
    )


@pytest.mark.parametrize(
    ("why", "op", "applied", "profile", "running", "waits"),
    [
        ("installed with boot, not rebooted yet", boot_op(), NEW, NEW, OLD, True),
        ("rebooted into it", boot_op(), NEW, NEW, NEW, False),
        ("no operation", None, NEW, NEW, OLD, False),
        ("nothing applied", boot_op(), None, NEW, OLD, False),
        ("a switch that did not stick is drift", boot_op(action="switch"), NEW, NEW, OLD, False),
        ("a trial ran it live", boot_op(trial=True), NEW, NEW, OLD, False),
        ("the trial default is on", boot_op(request={"action": "boot"}), NEW, NEW, OLD, False),
        ("rolled back", boot_op(state="RolledBack"), NEW, NEW, OLD, False),
        ("a manual rollback", boot_op(kind="rollback"), NEW, NEW, OLD, False),
        ("another system was applied since", boot_op(storePath=OTHER), NEW, NEW, OLD, False),
        ("the profile moved by hand", boot_op(), NEW, OTHER, OLD, False),
        ("another system activated by hand", boot_op(), NEW, NEW, OTHER, False),
        ("nothing runs", boot_op(), NEW, NEW, None, False),
    ],
)
def test_a_system_installed_for_the_next_boot_is_not_drift(
    why: str,
    op: Operation | None,
    applied: str | None,
    profile: str | None,
    running: str | None,
    waits: bool,
) -> None:
    assert (
        installed_for_next_boot(op, applied=applied, profile=profile, running=running) is waits
    ), why
