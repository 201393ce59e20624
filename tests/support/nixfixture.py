"""The real-Nix fixture as the tests use it: the fake NixOS system in fleet repositories.

The fake system itself (the flake, the sandbox layout, the knobs and what its
`switch-to-configuration` does) is `reconciler/demo/fakenixos`, shared with
`pullnix demo`; read its docstring for the contract. This module adds what only
tests need: git repositories made with the `git` command, plain `nix build`,
and readers of what activation left. Must not: touch the real machine.

## Helpers

`write_fleet(worktree, sandbox, hosts=..., version=..., **knobs)` writes
`flake.nix` and `fixture.json` (hosts: names, or host -> overrides);
`init_fleet_repo(path, sandbox, ..., files=...)` makes `path/fleet.git` (bare)
and `path/fleet` (work tree) with one commit on `main` and returns a FleetRepo
(`bare`, `worktree`, `sha`, `flake_ref(sha)`); `commit_fleet(repo, hosts=...,
files=..., **knobs)` changes knobs on top of the last commit, pushes, returns
the SHA. `build_toplevel(flake_ref, host)` builds with plain `nix build`.
`set_profile` adds a profile generation, `install_system` makes a path the
installed-and-booted system, `boot_into` simulates a reboot, `read_calls`
and `read_health` read what activation left.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.demo.fakenixos import (
    DEFAULT_KNOBS,
    FLAKE_FILE,
    FLAKE_SOURCE,
    KNOBS_FILE,
    OFFLINE_NIX_CONFIG,
    Sandbox,
    install_system,
    knobs_document,
    make_sandbox,
    nix_system,
    render_knobs,
    set_profile,
    symlink,
    toplevel_attr,
    with_knobs,
)

__all__ = [
    "BUILD_FAILURE_TEXT",
    "DEFAULT_KNOBS",
    "EVAL_ERROR_TEXT",
    "OFFLINE_NIX_CONFIG",
    "SYSTEM",
    "FleetRepo",
    "Sandbox",
    "boot_into",
    "build_toplevel",
    "commit_fleet",
    "init_fleet_repo",
    "install_system",
    "make_sandbox",
    "read_calls",
    "read_health",
    "set_profile",
    "write_fleet",
]

BUILD_FAILURE_TEXT = "pullnix-fixture: build failed on purpose (knob failBuild=true)"
EVAL_ERROR_TEXT = "pullnix-fixture: evaluation error on purpose"
SYSTEM = nix_system()


@dataclass(frozen=True)
class FleetRepo:
    """A fleet repository as the tests use it: a bare repo (the "remote") and a work tree."""

    bare: Path
    worktree: Path
    sha: str
    branch: str = "main"

    def flake_ref(self, sha: str | None = None) -> str:
        """`git+file://` of the bare repo pinned at `sha` (default: the initial commit)."""
        return f"git+file://{self.bare}?ref={self.branch}&rev={sha or self.sha}"


def write_fleet(
    worktree: Path,
    sandbox: Sandbox,
    *,
    hosts: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("edge-01",),
    version: str = "1",
    **knobs: Any,
) -> None:
    """Write the fake system's `flake.nix` and `fixture.json` into `worktree`; the caller commits.

    `hosts` is a list of host names, or a mapping host -> per-host knob overrides.
    """
    worktree.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FLAKE_SOURCE, worktree / FLAKE_FILE)
    doc = knobs_document(sandbox, hosts=hosts, version=version, **knobs)
    (worktree / KNOBS_FILE).write_text(render_knobs(doc))


def init_fleet_repo(
    path: Path,
    sandbox: Sandbox,
    *,
    hosts: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("edge-01",),
    version: str = "1",
    files: Mapping[str, str] | None = None,
    **knobs: Any,
) -> FleetRepo:
    """Make `path/fleet.git` (bare) and `path/fleet` (work tree) with one commit on `main`.

    `files` adds more files to the commit (relative path -> text), e.g. pullnix.yaml.
    """
    bare, worktree = path / "fleet.git", path / "fleet"
    _git(path, "init", "--quiet", "--bare", "--initial-branch=main", str(bare))
    _git(path, "init", "--quiet", "--initial-branch=main", str(worktree))
    _git(worktree, "remote", "add", "origin", str(bare))
    write_fleet(worktree, sandbox, hosts=hosts, version=version, **knobs)
    _write_files(worktree, files)
    sha = _commit_and_push(worktree, f"fleet: version {version}")
    return FleetRepo(bare=bare, worktree=worktree, sha=sha)


def commit_fleet(
    repo: FleetRepo,
    *,
    hosts: Mapping[str, Mapping[str, Any]] | None = None,
    files: Mapping[str, str] | None = None,
    message: str | None = None,
    **knobs: Any,
) -> str:
    """Change knobs (defaults, or per host via `hosts`) on top of the last commit; return its SHA.

    Knobs not named keep their committed values, so successive commits accumulate.
    """
    doc = json.loads((repo.worktree / KNOBS_FILE).read_text())
    (repo.worktree / KNOBS_FILE).write_text(render_knobs(with_knobs(doc, hosts=hosts, **knobs)))
    _write_files(repo.worktree, files)
    return _commit_and_push(repo.worktree, message or f"fleet: {sorted(knobs) or 'files'}")


def build_toplevel(flake_ref: str, host: str) -> str:
    """Build the host's toplevel from `flake_ref` with plain `nix build`; return the store path."""
    result = subprocess.run(
        ["nix", "build", "--no-link", "--json", f"{flake_ref}#{toplevel_attr(host)}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fixture build of {host} from {flake_ref} failed:\n{result.stderr}")
    return str(json.loads(result.stdout)[0]["outputs"]["out"])


def boot_into(sandbox: Sandbox, store_path: str | None = None) -> None:
    """Simulate a reboot: booted and current system become the boot default (or `store_path`)."""
    target = store_path or os.readlink(sandbox.boot_default)
    for link in (sandbox.current_system, sandbox.booted_system):
        symlink(link, target)


def read_calls(sandbox: Sandbox) -> list[dict[str, Any]]:
    """Every switch-to-configuration call recorded in the sandbox, oldest first."""
    try:
        lines = sandbox.calls.read_text().splitlines()
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in lines if line.strip()]


def read_health(sandbox: Sandbox) -> str | None:
    """The health status the last activation wrote (`ok`/`broken`), or None."""
    try:
        return (sandbox.health_dir / "status").read_text().strip()
    except FileNotFoundError:
        return None


def _write_files(worktree: Path, files: Mapping[str, str] | None) -> None:
    for rel, text in (files or {}).items():
        target = worktree / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def _commit_and_push(worktree: Path, message: str) -> str:
    _git(worktree, "add", "--all")
    _git(worktree, "commit", "--quiet", "--allow-empty", "-m", message)
    _git(worktree, "push", "--quiet", "origin", "HEAD:refs/heads/main")
    return _git(worktree, "rev-parse", "HEAD").strip()


_GIT_ENV = {
    "GIT_AUTHOR_NAME": "pullnix fixture",
    "GIT_AUTHOR_EMAIL": "fixture@pullnix.invalid",
    "GIT_COMMITTER_NAME": "pullnix fixture",
    "GIT_COMMITTER_EMAIL": "fixture@pullnix.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
}


def _git(cwd: Path, *args: str) -> str:
    cwd.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env={**os.environ, **_GIT_ENV},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout
