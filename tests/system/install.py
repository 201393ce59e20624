"""pullnix installed into a booted container the way the NixOS module installs it.

Owns the guest side of the system tier: pullnix itself in the root's venv (a
wheel made on the host), the helper's store path (`nix-store --add` of a staged
directory: the stdlib-only island plus a wrapper run by the container's python3),
the fleet repository (`fleet.py`) and generation 1: its first commit built by
the container's own Nix, switched to and made the system profile's generation,
as after installing NixOS. That switch does what the NixOS module's units and
files do on a first boot: it makes the `pullnix` user (uid 399), links
/etc/pullnix/agent.toml (rendered by nix/render-config.nix), creates the tmpfiles
directories, and starts pullnix-helper-install.service (which makes the helper's
profile under /nix/var), the helper from that profile, the git server and the real
`pullnix agent`, unprivileged in its sandbox, building through Debian's
nix-daemon; the agent then follows the fleet repository by itself.

A generation's `bin/switch-to-configuration` is `guest/switch-to-configuration`:
it activates units the way NixOS's does (write them to /etc/systemd/system,
`daemon-reload`, restart what changed unless the unit says
`X-RestartIfChanged=false`, start what is new); a systemd generator
(`guest/pullnix-stage-2`) activates the boot default at boot, as NixOS's stage 2
does.

Must not: install anything on the host; staging happens in the container's
shared directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import reconciler
from tests.system.container import SHARED_IN_GUEST, Container
from tests.system.fleet import Fleet
from tests.system.rootfs import AGENT_VENV, HOSTNAME

HERE = Path(__file__).resolve().parent
GUEST_DIR = HERE / "guest"
ISLAND = Path(reconciler.__file__).resolve().parent
PULLNIX = f"{AGENT_VENV}/bin/pullnix"
HELPER_PROFILE = "/nix/var/nix/profiles/pullnix/helper"
CONFIG_PATH = "/etc/pullnix/agent.toml"
HELPER_UNIT = "pullnix-helper.service"
AGENT_UNIT = "pullnix-agent.service"
GIT_UNIT = "fleet-git-daemon.service"
SYSTEM_PROFILE = "/nix/var/nix/profiles/system"
BOOT_DEFAULT = "/boot/pullnix-default"  # where the fake switch-to-configuration "installs boot"
STAGE_2_GENERATOR = "/etc/systemd/system-generators/pullnix-stage-2"
TOPLEVEL = "config.system.build.toplevel"


@dataclass(frozen=True)
class Installed:
    helper: str  # the store path the helper's profile points at
    fleet: Fleet  # the repository the agent follows
    revision: str  # generation 1's commit
    system: str  # generation 1's toplevel: running, committed, the boot default


def install_pullnix(box: Container, wheel: Path, **knobs: Any) -> Installed:
    """pullnix, its config, the helper in its profile, the fleet repository with one
    commit (`knobs` changed from the defaults), and that commit's system switched to
    (which starts the agent)."""
    install_agent_package(box, wheel)
    box.copy_in(GUEST_DIR / "pullnix-stage-2", STAGE_2_GENERATOR, mode=0o755)
    helper = add_helper(box)
    fleet = Fleet(box.shared, HOSTNAME, helper)
    revision = fleet.commit("generation 1: the installed system", **knobs)
    system = build_generation(box, fleet, revision)
    box.run([f"{system}/bin/switch-to-configuration", "switch"])
    set_profile(box, SYSTEM_PROFILE, system)
    # what this boot booted, as NixOS's stage 2 records it (its kernel is generation 1's)
    box.run(["ln", "-sfn", system, "/run/booted-system"])
    return Installed(helper=helper, fleet=fleet, revision=revision, system=system)


def build_generation(box: Container, fleet: Fleet, revision: str) -> str:
    """`revision`'s toplevel, built by the container's Nix as the agent builds it; its path."""
    flake = f"{fleet.guest_url(SHARED_IN_GUEST)}&rev={revision}"
    built = box.run(
        [
            "nix",
            "build",
            "--no-link",
            "--json",
            f"{flake}#nixosConfigurations.{fleet.host}.{TOPLEVEL}",
        ],
        timeout=300,
    )
    path: str = json.loads(built.stdout)[0]["outputs"]["out"]
    assert path.startswith("/nix/store/"), built
    return path


def install_agent_package(box: Container, wheel: Path) -> str:
    """pullnix itself (a wheel made on the host) into the root's agent venv, whose
    dependencies the cached root already holds; the path of its `pullnix` command."""
    stage = box.shared / "wheels"
    stage.mkdir(exist_ok=True)
    shutil.copy2(wheel, stage / wheel.name)
    box.run(
        [
            f"{AGENT_VENV}/bin/pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
            box.guest_path(stage / wheel.name),
        ]
    )
    return PULLNIX


def build_wheel(dest: Path) -> Path:
    """pullnix's wheel, built on the host from this checkout."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--wheel-dir",
            str(dest),
            str(ISLAND.parent),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (wheel,) = dest.glob("pullnix-*.whl")
    return wheel


def add_helper(box: Container, label: str = reconciler.__version__) -> str:
    """A store path with `bin/pullnix-helper` and the helper's island; its path."""
    stage = box.shared / "stage" / f"pullnix-helper-{label}"
    if stage.exists():
        shutil.rmtree(stage)
    package = stage / "lib" / "python" / "reconciler"
    package.mkdir(parents=True)
    shutil.copy2(ISLAND / "__init__.py", package / "__init__.py")
    for part in ("common", "helper"):  # the helper's island stands on the stdlib base
        (package / part).mkdir()
        for module in sorted((ISLAND / part).glob("*.py")):
            shutil.copy2(module, package / part / module.name)
    wrapper = stage / "bin" / "pullnix-helper"
    wrapper.parent.mkdir()
    shutil.copy2(GUEST_DIR / "pullnix-helper", wrapper)
    wrapper.chmod(0o755)
    path = box.run(["nix-store", "--add", box.guest_path(stage)]).stdout.strip()
    assert path.startswith("/nix/store/"), path
    return path


def set_profile(box: Container, profile: str, store_path: str) -> None:
    """Point `profile` at `store_path` as a new generation, as the module's activation does."""
    box.run(["mkdir", "-p", str(Path(profile).parent)])
    box.run(["nix-env", "--profile", profile, "--set", store_path])
