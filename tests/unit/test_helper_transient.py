"""Reading the transient activation unit's state from `systemctl show` (the system tier
runs the unit itself under real systemd)."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.helper import transient


def show(**values: str) -> transient.UnitState:
    return transient.parse_show("".join(f"{k}={v}\n" for k, v in values.items()))


@pytest.mark.parametrize(
    ("values", "running", "succeeded", "gone"),
    [
        (
            {"LoadState": "loaded", "ActiveState": "active", "SubState": "running"},
            True,
            False,
            False,
        ),
        (
            {
                "LoadState": "loaded",
                "ActiveState": "active",
                "SubState": "exited",
                "Result": "success",
            },
            False,
            True,
            False,
        ),
        (
            {"LoadState": "not-found", "ActiveState": "inactive", "SubState": "dead"},
            False,
            False,
            True,
        ),
        (
            {"LoadState": "loaded", "ActiveState": "failed", "SubState": "failed"},
            False,
            False,
            True,
        ),
        (
            {"LoadState": "loaded", "ActiveState": "deactivating", "SubState": "stop-sigterm"},
            True,
            False,
            False,
        ),
    ],
)
def test_unit_states(values: dict[str, str], running: bool, succeeded: bool, gone: bool) -> None:
    state = show(**values)
    assert (state.running, state.succeeded, state.gone) == (running, succeeded, gone)


def test_show_output_with_equals_in_the_description_keeps_it_whole() -> None:
    mine = transient.description("op-1", "/nix/store/abc-nixos-system", "test")
    state = show(Description=mine + " a=b", InvocationID="0123")
    assert state.description == mine + " a=b"
    assert state.invocation == "0123"
    assert mine == "pullnix op-1: /nix/store/abc-nixos-system/bin/switch-to-configuration test"


def test_without_systemd_the_child_process_path_is_taken(tmp_path: Path) -> None:
    assert transient.available(tmp_path / "absent") is False
    (tmp_path / "system").mkdir()
    assert transient.available(tmp_path / "system") is True
