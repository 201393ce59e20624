"""Reboots that happen: a generation with a new "kernel" needs a reboot; with
`reboot.policy: ifNeeded` the helper reboots the container inside the window (nspawn exits
133 and is started again, as systemd-nspawn@.service does), once logind's shutdown
inhibitors let it, and the machine comes up on that generation; outside the window there
is no reboot, and the status says when it will happen."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.system.container import Container
from tests.system.guestcli import condition, history, ready_at, reconcile_now, status, wait_for
from tests.system.install import Installed, build_generation

pytestmark = pytest.mark.system


def _window(start_hours: int, end_hours: int) -> tuple[str, str]:
    """A reboot window from now + `start_hours` to now + `end_hours` (the container's local
    time is UTC, like this clock)."""

    def at(hours: int) -> str:
        t = time.gmtime(time.time() + hours * 3600)
        return f"{t.tm_hour:02d}:{t.tm_min:02d}"

    return at(start_hours), at(end_hours)


def _boot_id(box: Container) -> str:
    return box.read_text("/proc/sys/kernel/random/boot_id").strip()


def _reboots(box: Container) -> list[dict[str, Any]]:
    return [e for e in history(box) if e["kind"] == "reboot"]


def test_a_new_kernel_reboots_inside_the_window_once_inhibitors_let_it(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    # an operator's `systemd-inhibit --what=shutdown`, as a maintenance job would hold it
    container.run(
        [
            "systemd-run",
            "--unit=maintenance",
            "systemd-inhibit",
            "--what=shutdown",
            "--mode=block",
            "--who=test",
            "--why=maintenance",
            "sleep",
            "600",
        ]
    )
    boot_before = _boot_id(container)
    revision = installed.fleet.commit(
        "generation 2: a new kernel", version="2", kernel="6.6", reboot_window=_window(-1, 2)
    )
    reconcile_now(container)

    def inhibited() -> str | None:
        ready = condition(status(container), "Ready")
        return ready.get("message") if "inhibit" in ready.get("message", "") else None

    said = wait_for(inhibited, 240, "the reboot held off by the inhibitor", container)
    assert "maintenance" in said or "test" in said, said
    assert _boot_id(container) == boot_before
    second = build_generation(container, installed.fleet, revision)

    container.run(["systemctl", "stop", "maintenance.service"])
    container.wait_reboot(timeout=300)

    assert _boot_id(container) != boot_before
    assert container.run(["readlink", "-f", "/run/booted-system"]).stdout.strip() == second
    reboot = wait_for(
        lambda: next(iter(_reboots(container)), None), 180, "the reboot in history", container
    )
    assert (reboot["result"], reboot["storePath"]) == ("Succeeded", second), reboot
    assert f"rebooted into {second}" in reboot["message"]
    doc = ready_at(container, revision)
    ready = condition(doc, "Ready")
    assert ready["reason"] == "Succeeded", ready  # the kernel is the booted one now
    assert container.boots == 2  # exactly one reboot
    assert len(_reboots(container)) == 1


def test_outside_the_window_there_is_no_reboot_and_the_status_says_when(
    container: Container, installed: Installed
) -> None:
    ready_at(container, installed.revision)
    boot_before = _boot_id(container)
    window = _window(3, 4)
    revision = installed.fleet.commit(
        "generation 2: a new kernel", version="2", kernel="6.6", reboot_window=window
    )
    reconcile_now(container)

    def waiting() -> dict[str, Any] | None:
        doc = status(container)
        applied = doc.get("status", {}).get("lastAppliedRevision") == revision
        return doc if applied and condition(doc, "Ready")["reason"] == "RebootRequired" else None

    doc = wait_for(waiting, 240, "Ready, waiting for the reboot window", container)
    message = condition(doc, "Ready")["message"]
    assert f"next reboot window, {window[0]}-{window[1]}" in message, message
    # another pass decides the same: still no reboot
    last = doc["status"]["lastPassAt"]
    reconcile_now(container)
    again = wait_for(
        lambda: ((d := status(container))["status"]["lastPassAt"] != last and d) or None,
        120,
        "another pass",
        container,
    )
    assert condition(again, "Ready")["reason"] == "RebootRequired"
    assert container.running
    assert _boot_id(container) == boot_before
    assert _reboots(container) == []
