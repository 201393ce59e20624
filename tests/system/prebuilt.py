"""Prebuilt systems in the system tier: CI's publish on the host, the cache's trust in the guest.

Owns the steps between the host, which plays CI (the real `pullnix publish` of a
fleet commit built by the host's Nix, signed with a key from `nix-store
--generate-binary-cache-key` and copied into a `file://` cache that nginx serves
on the host's end of the container's link), and the container, whose own Nix and
/nix/store fetch from it: the guest's nix.conf trusting the cache as the NixOS
module's `nix.settings` does (the agent is unprivileged, so the nix-daemon takes
only the substituters and keys nix.conf names), and looking into the guest's store.

Must not: put anything into the guest's store, or evaluate anything there.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.support.agentmachine import PULLNIX
from tests.support.binarycache import KeyPair
from tests.system.container import Container
from tests.system.fleet import Fleet
from tests.system.rootfs import NIX_CONF


def trust_cache(box: Container, substituters: list[str], keys: list[str]) -> None:
    """The guest's /etc/nix/nix.conf with `substituters` and `trusted-public-keys` set as
    nix/module.nix sets them from services.pullnix.binaryCache; the nix-daemon restarted
    so it serves the agent with them."""
    lines = [line for line in NIX_CONF.splitlines() if not line.startswith("substituters")]
    lines += [f"substituters = {' '.join(substituters)}", f"trusted-public-keys = {' '.join(keys)}"]
    box.write_text("/etc/nix/nix.conf", "\n".join(lines) + "\n")
    box.run(["systemctl", "try-restart", "nix-daemon.service"])


def publish(fleet: Fleet, revision: str, key: KeyPair, to: str, lock_file: Path) -> dict[str, Any]:
    """`pullnix publish` of `revision` on the host, as CI runs it: built by the host's Nix,
    signed with `key`, copied to `to`, the lock at `lock_file`; its `--json` report."""
    done = subprocess.run(
        [
            str(PULLNIX),
            "publish",
            "--flake",
            str(fleet.bare),
            "--revision",
            revision,
            "--sign-key",
            str(key.secret),
            "--to",
            to,
            "--lock-file",
            str(lock_file),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def in_guest_store(box: Container, store_path: str) -> bool:
    """Whether the guest's Nix has `store_path` (valid in its own database)."""
    return box.run(["nix-store", "--check-validity", store_path], check=False).returncode == 0


def guest_derivations(box: Container, name: str) -> list[str]:
    """The .drv files in the guest's store whose name is `name`: evaluation leaves them."""
    found = box.run(["find", "/nix/store", "-maxdepth", "1", "-name", f"*-{name}.drv"], check=False)
    return sorted(found.stdout.split())
