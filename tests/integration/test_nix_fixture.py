"""The fake NixOS fixture keeps its contract: real Nix builds it, its switch-to-configuration
acts on the sandbox exactly as tests/support/nixfixture.py documents."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.nixfixture import (
    BUILD_FAILURE_TEXT,
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    read_calls,
    read_health,
)

pytestmark = pytest.mark.nix


@pytest.fixture
def fleet(tmp_path: Path, sandbox: Sandbox) -> FleetRepo:
    return init_fleet_repo(tmp_path, sandbox, hosts=("edge-01", "edge-02"))


def _switch(toplevel: str, action: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [f"{toplevel}/bin/switch-to-configuration", action],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def test_toplevel_looks_like_a_nixos_system(fleet: FleetRepo) -> None:
    top = Path(build_toplevel(fleet.flake_ref(), "edge-01"))
    assert top.name.endswith("-nixos-system-edge-01-1")
    assert (top / "nixos-version").read_text() == "1"
    for name in ("init", "activate", "bin/switch-to-configuration"):
        assert os.access(top / name, os.X_OK), name
    assert (top / "kernel").is_symlink()
    assert (top / "initrd").is_symlink()
    assert (top / "kernel-modules" / "lib" / "modules" / "version").is_file()
    assert not (top / "switch-inhibitors").exists()
    assert not (top / "configuration-revision").exists()


def test_committed_knobs_change_the_toplevel_and_equal_kernels_share_a_store_path(
    fleet: FleetRepo,
) -> None:
    first = Path(build_toplevel(fleet.flake_ref(), "edge-01"))
    sha = commit_fleet(fleet, version="2", inhibitors="dbus", revision="abc123")
    second = Path(build_toplevel(fleet.flake_ref(sha), "edge-01"))
    assert first != second
    assert (second / "nixos-version").read_text() == "2"
    assert (second / "switch-inhibitors").read_text() == "dbus"
    assert (second / "configuration-revision").read_text() == "abc123"
    assert (first / "kernel").resolve() == (second / "kernel").resolve()
    sha = commit_fleet(fleet, kernel="6.9-new")
    third = Path(build_toplevel(fleet.flake_ref(sha), "edge-01"))
    assert (third / "kernel").resolve() != (second / "kernel").resolve()
    assert (third / "initrd").resolve() == (second / "initrd").resolve()


def test_knobs_can_be_overridden_per_host(fleet: FleetRepo) -> None:
    sha = commit_fleet(fleet, hosts={"edge-02": {"version": "7"}})
    assert Path(build_toplevel(fleet.flake_ref(sha), "edge-01"), "nixos-version").read_text() == "1"
    assert Path(build_toplevel(fleet.flake_ref(sha), "edge-02"), "nixos-version").read_text() == "7"


def test_failing_build_says_so(fleet: FleetRepo) -> None:
    sha = commit_fleet(fleet, fail_build=True)
    with pytest.raises(RuntimeError, match="failed on purpose"):
        build_toplevel(fleet.flake_ref(sha), "edge-01")
    assert "failBuild" in BUILD_FAILURE_TEXT


def test_unknown_knob_is_refused(fleet: FleetRepo) -> None:
    with pytest.raises(TypeError, match="unknown fixture knob 'colour'"):
        commit_fleet(fleet, colour="red")


def test_switch_activates_and_makes_the_boot_default(fleet: FleetRepo, sandbox: Sandbox) -> None:
    top = build_toplevel(fleet.flake_ref(), "edge-01")
    result = _switch(top, "switch")
    assert result.returncode == 0, result.stderr
    assert os.readlink(sandbox.current_system) == top
    assert os.readlink(sandbox.boot_default) == top
    assert read_health(sandbox) == "ok"
    [call] = read_calls(sandbox)
    assert call["action"] == "switch"
    assert call["toplevel"] == top
    assert abs(call["time"] - time.time()) < 60


def test_test_activates_without_touching_the_boot_default(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    old = build_toplevel(fleet.flake_ref(), "edge-01")
    install_system(sandbox, old)
    new = build_toplevel(fleet.flake_ref(commit_fleet(fleet, version="2")), "edge-01")
    assert _switch(new, "test").returncode == 0
    assert os.readlink(sandbox.current_system) == new
    assert os.readlink(sandbox.boot_default) == old
    assert os.readlink(sandbox.booted_system) == old


def test_boot_only_changes_the_boot_default(fleet: FleetRepo, sandbox: Sandbox) -> None:
    old = build_toplevel(fleet.flake_ref(), "edge-01")
    install_system(sandbox, old)
    new = build_toplevel(fleet.flake_ref(commit_fleet(fleet, version="2")), "edge-01")
    assert _switch(new, "boot").returncode == 0
    assert os.readlink(sandbox.boot_default) == new
    assert os.readlink(sandbox.current_system) == old
    assert [c["action"] for c in read_calls(sandbox)] == ["boot"]


def test_dry_activate_records_and_changes_nothing(fleet: FleetRepo, sandbox: Sandbox) -> None:
    top = build_toplevel(fleet.flake_ref(), "edge-01")
    assert _switch(top, "dry-activate").returncode == 0
    assert not sandbox.current_system.exists()
    assert not sandbox.boot_default.exists()
    assert read_health(sandbox) is None
    assert [c["action"] for c in read_calls(sandbox)] == ["dry-activate"]


def test_unknown_action_prints_usage_and_records_nothing(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    top = build_toplevel(fleet.flake_ref(), "edge-01")
    result = _switch(top, "reboot")
    assert result.returncode == 1
    assert "Usage:" in result.stderr
    assert read_calls(sandbox) == []


def test_kill_pidfile_sends_sigterm_to_a_real_process(
    fleet: FleetRepo, sandbox: Sandbox, tmp_path: Path
) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        pidfile = tmp_path / "agent.pid"
        pidfile.write_text(f"{victim.pid}\n")
        top = build_toplevel(fleet.flake_ref(commit_fleet(fleet, kill_pidfile=pidfile)), "edge-01")
        assert _switch(top, "switch").returncode == 0
        assert victim.wait(timeout=10) == -signal.SIGTERM
    finally:
        victim.kill()
        victim.wait()


def test_failed_activation_exits_4_after_moving_current_system(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    top = build_toplevel(fleet.flake_ref(commit_fleet(fleet, activation="fail")), "edge-01")
    result = _switch(top, "test")
    assert result.returncode == 4
    assert "activation failed on purpose" in result.stderr
    assert os.readlink(sandbox.current_system) == top


def test_hanging_activation_does_not_return_until_killed(
    fleet: FleetRepo, sandbox: Sandbox
) -> None:
    sha = commit_fleet(fleet, activation="hang", hang_seconds=120)
    top = build_toplevel(fleet.flake_ref(sha), "edge-01")
    proc = subprocess.Popen(
        [f"{top}/bin/switch-to-configuration", "switch"], stderr=subprocess.DEVNULL
    )
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.5)
        assert os.readlink(sandbox.current_system) == top
    finally:
        proc.kill()
    assert proc.wait(timeout=10) == -signal.SIGKILL


def test_broken_health_is_written_by_activation(fleet: FleetRepo, sandbox: Sandbox) -> None:
    top = build_toplevel(fleet.flake_ref(commit_fleet(fleet, health="broken")), "edge-01")
    assert _switch(top, "test").returncode == 0
    assert read_health(sandbox) == "broken"
    assert json.loads(sandbox.calls.read_text().splitlines()[0])["action"] == "test"


def test_the_flake_s_own_defaults_match_the_python_ones(fleet: FleetRepo, sandbox: Sandbox) -> None:
    full = build_toplevel(fleet.flake_ref(), "edge-01")
    (fleet.worktree / "fixture.json").write_text(
        json.dumps({"sandbox": str(sandbox.root), "hosts": {"edge-01": {}}})
    )
    sha = commit_fleet(fleet)  # no knobs: keeps the minimal file as written
    assert build_toplevel(fleet.flake_ref(sha), "edge-01") == full
