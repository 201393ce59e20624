"""pullnix installed into a booted container the way the NixOS module installs it.

Owns the guest side of the system tier: store paths made with the container's
own Nix (`nix-store --add` of a staged directory), the helper's profile
(`/nix/var/nix/profiles/pullnix/helper`, set with `nix-env --set`), the machine
config, and a NixOS-like activation of a generation's units (write them to
/etc/systemd/system, `daemon-reload`, restart what changed unless the unit says
`X-RestartIfChanged=false`, start what is new).

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
from tests.system.rootfs import AGENT_VENV

HERE = Path(__file__).resolve().parent
UNITS_DIR = HERE / "units"
GUEST_DIR = HERE / "guest"
ISLAND = Path(reconciler.__file__).resolve().parent
HELPER_PROFILE = "/nix/var/nix/profiles/pullnix/helper"
CONFIG_PATH = "/etc/pullnix/agent.toml"
HELPER_UNIT = "pullnix-helper.service"
AGENT_UNIT = "pullnix-agent.service"
STANDIN_RECORD = "/var/lib/pullnix-standin/agent.json"
UNIT_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class Installed:
    helper: str  # the store path the helper's profile points at
    agent: str   # the stand-in agent's store path of the active generation


def install_pullnix(box: Container) -> Installed:
    """The machine config, the helper in its profile, generation 1's units, all running."""
    box.copy_in(GUEST_DIR / "agent.toml", CONFIG_PATH)
    helper = add_helper(box)
    set_profile(box, HELPER_PROFILE, helper)
    agent = add_agent_generation(box, 1)
    activate(box, render_units(agent))
    return Installed(helper=helper, agent=agent)


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


def add_agent_generation(box: Container, generation: int) -> str:
    """The stand-in agent of one generation, as its own store path."""
    stage = _stage(box, f"pullnix-agent-standin-gen{generation}")
    _copy_island(stage)
    _install(GUEST_DIR / "standin-agent", stage / "bin" / "pullnix-agent-standin")
    (stage / "generation").write_text(f"{generation}\n")
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


def activate(box: Container, units: dict[str, str]) -> list[str]:
    """Activate a generation's units like switch-to-configuration; the units it restarted."""
    changed, added = [], []
    for name, text in units.items():
        current = box.run(["cat", f"{UNIT_DIR}/{name}"], check=False)
        if current.returncode != 0:
            added.append(name)
        elif current.stdout != text:
            changed.append(name)
        else:
            continue
        box.write_text(f"{UNIT_DIR}/{name}", text)
    box.run(["systemctl", "daemon-reload"])
    restart = [name for name in changed if "X-RestartIfChanged=false" not in units[name]]
    if added:
        box.run(["systemctl", "enable", *added])
        box.run(["systemctl", "start", *added])
    if restart:
        box.run(["systemctl", "restart", *restart])
    return restart


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
