"""The README's first command, on a machine whose Nix has never run, in a fresh clone.

The command is read from README.md (the first line of the Quick start), and runs in a
fresh `git clone` of this repository (its committed HEAD: uncommitted changes are not
in it) inside a private mount namespace (`unshare --mount`) whose `/nix` is an empty
tmpfs: what Debian's nix-bin leaves right after `apt-get install`, before Nix first
runs. The host's store is never touched. The environment is a user's shell: no
NIX_CONFIG, no venv on PATH. The Debian packages are already installed here, so
install.sh installs none; its venv comes from PyPI as on any fresh clone.

Beside it: the demo on its own (a user who installed nix-bin by hand) on such a
/nix, and on a /nix where no store can be made.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.agentmachine import PULLNIX

pytestmark = [pytest.mark.nix, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]

UNSHARE = ["unshare", "--mount", "--propagation", "private"]
#: In the namespace: an empty tmpfs on /nix (checked empty), then the command ($2) in the
#: clone ($1).
IN_NAMESPACE = """\
set -eu
mount -t tmpfs -o mode=0755 pullnix-fresh-nix /nix
if [ -n "$(ls -A /nix)" ]; then echo "/nix is not empty" >&2; exit 97; fi
cd "$1"
exec bash -c "$2"
"""


def first_command(readme: str) -> str:
    """The first line of the first ```sh block under "## Quick start"."""
    _, _, section = readme.partition("\n## Quick start")
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "README.md has no ```sh block under ## Quick start"
    return match.group(1).splitlines()[0].strip()


def users_shell_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("NIX_CONFIG", "VIRTUAL_ENV")}
    path = [p for p in env.get("PATH", "").split(":") if p and "/.venv/" not in p + "/"]
    env["PATH"] = ":".join(path)
    return env


NEEDS_ROOT = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: unshare --mount, and the demo"
)


def in_fresh_nix(shell: str, *args: str, timeout: float) -> tuple[int, str]:
    """`bash -c shell NAME args...` in a private mount namespace, in a user's shell
    environment (`shell` mounts the empty tmpfs on /nix); exit status and output."""
    done = subprocess.run(
        [*UNSHARE, "bash", "-c", shell, "fresh-nix", *args],
        env=users_shell_env(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@NEEDS_ROOT
def test_the_readmes_first_command_works_where_nix_never_ran(tmp_path: Path) -> None:
    command = first_command((ROOT / "README.md").read_text())
    assert "scripts/install.sh" in command
    assert "pullnix demo" in command
    assert shutil.which("unshare"), "util-linux's unshare is missing"
    clone = tmp_path / "pullnix"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True, timeout=300)

    code, out = in_fresh_nix(IN_NAMESPACE, str(clone), command, timeout=1800)
    assert code == 0, f"`{command}` exited {code}:\n{out[-6000:]}"
    # install.sh found no store and made it (so /nix really was a Nix that never ran).
    assert "no Nix store yet (Nix never ran here): nix-store --init" in out
    # The demo's story: a push converged by itself, a broken one rolled back by itself.
    assert "Act 1: a change is pushed; the machine converges by itself" in out
    assert re.search(r"demo\s+running /nix/store/\S+-nixos-system-edge-01-2\b", out), out
    assert "rolled back by itself: still running" in out
    assert re.search(r"\bRolledBack\b", out)
    assert re.search(r"\bSucceeded\b", out)
    # What the demo built lived in the namespace's /nix only.
    built = re.findall(r"/nix/store/[a-z0-9]{32}-nixos-system-edge-01-\d", out)
    assert built
    assert not any(Path(p).exists() for p in built), "the demo wrote to the host's store"


@NEEDS_ROOT
def test_the_demo_alone_creates_the_store_of_a_nix_that_never_ran() -> None:
    # A user who installed nix-bin by hand and runs the demo without install.sh.
    code, out = in_fresh_nix(
        f"mount -t tmpfs pullnix-fresh-nix /nix && exec {PULLNIX} demo --plain",
        timeout=900,
    )
    assert code == 0, out[-6000:]
    assert "No Nix store yet (/nix/store: Nix has never run here); creating it" in out
    assert "rolled back by itself: still running" in out


@NEEDS_ROOT
def test_a_store_that_cannot_be_created_is_named_as_such() -> None:
    code, out = in_fresh_nix(
        f"mount -t tmpfs -o ro pullnix-fresh-nix /nix && exec {PULLNIX} demo --plain",
        timeout=300,
    )
    assert code == 1, out
    assert "there is no Nix store yet (/nix/store) and `nix-store --init` could not" in out
    assert "Read-only file system" in out
    assert "run the demo as root" not in out
