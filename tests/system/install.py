"""pullnix installed into a booted container the way the NixOS module installs it.

Owns the guest side of the system tier: store paths made with the container's
own Nix (`nix-store --add` of a staged directory), the helper's profile
(`/nix/var/nix/profiles/pullnix/helper`, set with `nix-env --set`), the machine
config, and system generations: toplevels holding the generation's unit files
and a FAKE `bin/switch-to-configuration` (`guest/switch-to-configuration`) that
activates units the way NixOS's does (write them to /etc/systemd/system,
`daemon-reload`, restart what changed unless the unit says
`X-RestartIfChanged=false`, start what is new), so the helper can apply,
commit and roll them back for real; a systemd generator (`guest/pullnix-stage-2`)
activates the boot default at boot, as NixOS's stage 2 does.

The helper is standard library only, so its store path is the island
(`reconciler/helper`) plus a wrapper run by the container's python3. The full
package (the agent, the CLI) goes into the cached root's venv from a wheel built
on the host. Until the controller lands, the agent's unit runs a STAND-IN
(`guest/standin-agent`), one store path per generation.

Must not: install anything on the host; staging happens in the container's
shared directory.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import reconciler
from tests.system.container import Container
from tests.system.rootfs import AGENT_VENV, HOSTNAME

HERE = Path(__file__).resolve().parent
UNITS_DIR = HERE / "units"
GUEST_DIR = HERE / "guest"
ISLAND = Path(reconciler.__file__).resolve().parent
HELPER_PROFILE = "/nix/var/nix/profiles/pullnix/helper"
CONFIG_PATH = "/etc/pullnix/agent.toml"
HELPER_UNIT = "pullnix-helper.service"
AGENT_UNIT = "pullnix-agent.service"
STANDIN_RECORD = "/var/lib/pullnix-standin/agent.json"
SYSTEM_PROFILE = "/nix/var/nix/profiles/system"
BOOT_DEFAULT = "/boot/pullnix-default"  # where the fake switch-to-configuration "installs boot"
STAGE_2_GENERATOR = "/etc/systemd/system-generators/pullnix-stage-2"


@dataclass(frozen=True)
class Generation:
    """One system generation: a toplevel and the stand-in agent its units run."""

    number: int
    system: str    # the toplevel's store path
    agent: str     # the stand-in agent's store path
    revision: str  # what the stand-in confirms to the helper


@dataclass(frozen=True)
class Installed:
    helper: str        # the store path the helper's profile points at
    first: Generation  # the running, committed, boot-default generation


def install_pullnix(box: Container) -> Installed:
    """The machine config, the helper in its profile, and generation 1 switched to (running,
    the system profile's generation, the boot default), as after installing NixOS."""
    box.copy_in(GUEST_DIR / "agent.toml", CONFIG_PATH)
    box.copy_in(GUEST_DIR / "pullnix-stage-2", STAGE_2_GENERATOR, mode=0o755)
    helper = add_helper(box)
    set_profile(box, HELPER_PROFILE, helper)
    first = add_generation(box, 1)
    box.run([f"{first.system}/bin/switch-to-configuration", "switch"])
    set_profile(box, SYSTEM_PROFILE, first.system)
    return Installed(helper=helper, first=first)


def add_generation(box: Container, number: int, *, broken_agent: bool = False) -> Generation:
    """A new generation's store paths: its stand-in agent (exiting at once if
    `broken_agent`), and a toplevel whose units run it."""
    revision = f"rev-{number}"
    agent = add_agent(box, number, revision, broken=broken_agent)
    stage = _stage(box, f"nixos-system-{HOSTNAME}-{number}")
    _install(GUEST_DIR / "switch-to-configuration", stage / "bin" / "switch-to-configuration")
    units = stage / "etc" / "systemd" / "system"
    units.mkdir(parents=True)
    for name, text in render_units(agent).items():
        (units / name).write_text(text)
    return Generation(number, add_to_store(box, stage), agent, revision)


def install_agent_package(box: Container, wheel: Path) -> str:
    """pullnix itself (a wheel made on the host) into the root's agent venv, whose
    dependencies the cached root already holds; the path of its `pullnix` command."""
    stage = box.shared / "wheels"
    stage.mkdir(exist_ok=True)
    shutil.copy2(wheel, stage / wheel.name)
    box.run([f"{AGENT_VENV}/bin/pip", "install", "--quiet", "--no-index", "--no-deps",
             "--no-cache-dir", "--disable-pip-version-check", box.guest_path(stage / wheel.name)])
    return f"{AGENT_VENV}/bin/pullnix"


def build_wheel(dest: Path) -> Path:
    """pullnix's wheel, built on the host from this checkout."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--wheel-dir", str(dest), str(ISLAND.parent)],
                   check=True, capture_output=True, text=True)
    (wheel,) = dest.glob("pullnix-*.whl")
    return wheel


def add_helper(box: Container, label: str = reconciler.__version__) -> str:
    """A store path with `bin/pullnix-helper` and the helper's island; its path."""
    stage = _stage(box, f"pullnix-helper-{label}")
    _copy_island(stage)
    _install(GUEST_DIR / "pullnix-helper", stage / "bin" / "pullnix-helper")
    return add_to_store(box, stage)


def add_agent(box: Container, generation: int, revision: str, *, broken: bool) -> str:
    """The stand-in agent of one generation, as its own store path."""
    stage = _stage(box, f"pullnix-agent-standin-{generation}")
    _copy_island(stage)
    _install(GUEST_DIR / "standin-agent", stage / "bin" / "pullnix-agent-standin")
    (stage / "generation").write_text(f"{generation}\n")
    (stage / "revision").write_text(f"{revision}\n")
    if broken:
        (stage / "broken").write_text("this generation's agent exits at once, on purpose\n")
    return add_to_store(box, stage)


def add_to_store(box: Container, staged: Path) -> str:
    path = box.run(["nix-store", "--add", box.guest_path(staged)]).stdout.strip()
    assert path.startswith("/nix/store/"), path
    return path


def set_profile(box: Container, profile: str, store_path: str) -> None:
    """Point `profile` at `store_path` as a new generation, as the module's activation does."""
    box.run(["mkdir", "-p", str(Path(profile).parent)])
    box.run(["nix-env", "--profile", profile, "--set", store_path])


def render_units(agent_store_path: str) -> dict[str, str]:
    """One generation's unit files: the helper's verbatim, the agent's pointing at its path."""
    return {
        HELPER_UNIT: (UNITS_DIR / HELPER_UNIT).read_text(),
        AGENT_UNIT: (UNITS_DIR / AGENT_UNIT).read_text().replace("@agent@", agent_store_path),
    }


def _stage(box: Container, name: str) -> Path:
    stage = box.shared / "stage" / name
    if stage.exists():
        shutil.rmtree(stage)
    (stage / "bin").mkdir(parents=True)
    return stage


def _copy_island(stage: Path) -> None:
    """reconciler/__init__.py and reconciler/helper/*.py: all the helper imports."""
    package = stage / "lib" / "python" / "reconciler"
    (package / "helper").mkdir(parents=True)
    shutil.copy2(ISLAND / "__init__.py", package / "__init__.py")
    for module in sorted((ISLAND / "helper").glob("*.py")):
        shutil.copy2(module, package / "helper" / module.name)


def _install(source: Path, dest: Path) -> None:
    shutil.copy2(source, dest)
    dest.chmod(0o755)
