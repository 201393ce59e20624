"""Prebuilt systems on the fake machine: CI's `pullnix publish`, a lock commit, agent.toml's caches.

Owns the steps the prebuilt tests share: run the real `pullnix publish` in
the fleet work tree (as CI would), commit a deploy whose pullnix.yaml says
`configuration.prebuilt` and whose flake would fail to evaluate (so a
deploy that works proves nothing was evaluated on the machine), write a
lock by hand for the malformed cases, and point agent.toml's `[nix]` at a
cache and its keys (and `[source] max_age`).

Must not: fake Nix, git or the cache; everything here runs the real ones.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.support.agentmachine import PULLNIX, Machine, spec_yaml
from tests.support.binarycache import KeyPair
from tests.support.nixfixture import commit_fleet

LOCK = "pullnix.lock.json"
#: A flake.nix that cannot be evaluated: a deploy of it can only succeed without evaluation.
UNEVALUABLE_FLAKE = """\
{
  description = "evaluating this on the machine is a test failure";
  outputs = { self }: throw "pullnix-test: this flake was evaluated on the machine";
}
"""


def prebuilt_spec(machine: Machine, lock_file: str = LOCK) -> str:
    """The fake machine's pullnix.yaml with `configuration.prebuilt` instead of `flake`."""
    text = spec_yaml(machine.sandbox)
    return text.replace(
        'flake: "nixosConfigurations.{host}"', f"prebuilt: {{lockFile: {lock_file}}}"
    )


def configure_nix(
    machine: Machine,
    substituters: list[str],
    keys: list[str],
    max_age: str | None = None,
    **configure: Any,
) -> None:
    """agent.toml as `Machine.configure` writes it, plus `[nix]` and `[source] max_age`."""
    machine.configure(**configure)
    text = machine.paths.config.read_text()
    if max_age is not None:
        text = re.sub(r"(?m)^\[source\]\n", f'[source]\nmax_age = "{max_age}"\n', text, count=1)
    text += "\n[nix]\n"
    text += "substituters = [" + ", ".join(json.dumps(s) for s in substituters) + "]\n"
    text += "trusted_public_keys = [" + ", ".join(json.dumps(k) for k in keys) + "]\n"
    machine.paths.config.write_text(text)


def publish(
    machine: Machine, key: KeyPair, to: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """`pullnix publish` in the fleet work tree, as CI runs it."""
    flake = str(machine.repo.worktree)
    return subprocess.run(
        [
            str(PULLNIX),
            "publish",
            "--flake",
            flake,
            "--sign-key",
            str(key.secret),
            "--to",
            to,
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def commit_deploy(machine: Machine, lock_text: str | None = None, **knobs: Any) -> str:
    """Commit the deploy: prebuilt pullnix.yaml, the lock (the work tree's, or `lock_text`),
    and a flake that would fail to evaluate; push it and return its SHA."""
    files = {"pullnix.yaml": prebuilt_spec(machine), "flake.nix": UNEVALUABLE_FLAKE}
    if lock_text is not None:
        files[LOCK] = lock_text
    return commit_fleet(machine.repo, files=files, message="deploy: prebuilt", **knobs)


def lock_text(source_revision: str, hosts: dict[str, Any]) -> str:
    return json.dumps(
        {
            "apiVersion": "pullnix.dev/v1alpha1",
            "kind": "SystemLock",
            "sourceRevision": source_revision,
            "createdAt": "2026-12-01T12:00:00Z",
            "hosts": hosts,
        },
        indent=2,
    )


def read_lock(machine: Machine) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((machine.repo.worktree / LOCK).read_text())
    return doc


def narinfo_name(store_path: str) -> str:
    """The narinfo file a cache serves for `store_path`: `<hash>.narinfo`."""
    return Path(store_path).name.split("-", 1)[0] + ".narinfo"
