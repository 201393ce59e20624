"""After the boot, the helper archives the reboot it was asked for: Succeeded when the
expected system came up, Failed naming what came up, and nothing while the same boot
still runs (the machine is on its way down)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from reconciler.common.answers import operation_to_json as to_json
from reconciler.common.atomic import write_json_atomic
from reconciler.common.config import HelperConfig, MachineConfig, SystemConfig
from reconciler.common.protocol import ApplyRequest
from reconciler.helper import machine as m
from reconciler.helper import reboot
from reconciler.helper.journal import Journal

EXPECTED = "/nix/store/" + "e" * 32 + "-nixos-system-2"
OTHER = "/nix/store/" + "o" * 32 + "-nixos-system-1"


def setup(tmp_path: Path, booted: str, boot_id: str, asked_at: float) -> MachineConfig:
    link = tmp_path / "booted-system"
    link.symlink_to(booted)  # the links name store paths this machine need not have
    config = MachineConfig(
        host="h",
        system=SystemConfig(booted_system=link),
        helper=HelperConfig(state_dir=tmp_path / "state"),
    )
    request = ApplyRequest(
        store_path=str(tmp_path / EXPECTED), revision="r" * 40, action="boot", trial=False
    )
    op = m.begin("op-reboot", "reboot", request, m.Previous(OTHER, OTHER, 1), asked_at)
    write_json_atomic(
        config.helper.state_dir / reboot.RECORD,
        {"operation": to_json(op), "bootId": boot_id, "askedAt": asked_at},
    )
    return config


@pytest.mark.parametrize(
    ("booted", "state", "says"),
    [
        (EXPECTED, "Succeeded", f"rebooted into {EXPECTED}"),
        (OTHER, "Failed", f"{OTHER} came up instead of {EXPECTED}"),
    ],
)
def test_after_the_boot_the_reboot_is_archived_with_what_came_up(
    tmp_path: Path, booted: str, state: str, says: str
) -> None:
    config = setup(tmp_path, booted, "an earlier boot", 100.0)
    journal = Journal(config.helper.state_dir)
    reboot.settle(config, journal, 200.0)
    (archived,) = journal.recent()
    assert (archived["kind"], archived["state"], archived["storePath"]) == (
        "reboot",
        state,
        EXPECTED,
    )
    assert says in archived["message"]
    assert reboot.pending(config) is None
    assert journal.load() is None  # an operation in progress would have been left alone


def test_during_the_same_boot_the_reboot_stays_pending_then_gives_up(tmp_path: Path) -> None:
    config = setup(tmp_path, OTHER, reboot.boot_id(), 100.0)
    journal = Journal(config.helper.state_dir)
    reboot.settle(config, journal, 100.0 + reboot.GIVE_UP - 1)
    assert journal.recent() == []
    assert reboot.is_rebooting(config)
    reboot.settle(config, journal, 100.0 + reboot.GIVE_UP + 1)
    (archived,) = journal.recent()
    assert (archived["state"], archived["message"]) == ("Failed", "the machine did not reboot")
    assert not reboot.is_rebooting(config)


def test_an_unreadable_record_is_removed(tmp_path: Path) -> None:
    config = setup(tmp_path, EXPECTED, "x", 1.0)
    (config.helper.state_dir / reboot.RECORD).write_text(json.dumps({"operation": {}}))
    reboot.settle(config, Journal(config.helper.state_dir), 2.0)
    assert reboot.pending(config) is None
