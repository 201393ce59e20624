"""The real-Nix fixture: a FAKE NixOS system that every integration test builds and activates.

Owns the Python side of `tests/fixtures/system/flake.nix`: the sandbox layout,
the knobs, and helpers to put the fixture flake into a git repository. It is
not NixOS and says so in every name it builds (`nixos-system-<host>-<version>`
built by `/bin/sh`, no nixpkgs, no inputs). Must not: touch the real machine
(`/run`, `/boot`, `/nix/var/nix/profiles`); everything acts under a sandbox root.

## The sandbox (`make_sandbox(tmp)`)

| property         | path                    | what                                          |
|------------------|-------------------------|-----------------------------------------------|
| `current_system` | root/run/current-system | symlink, set by activation (`switch`, `test`) |
| `booted_system`  | root/run/booted-system  | symlink, set by tests (`install_system`)      |
| `profile`        | root/profiles/system    | a real Nix profile (`nix-env -p ... --set`)   |
| `boot_default`   | root/boot/default       | fake bootloader entry (`switch`, `boot`)      |
| `calls`          | root/switch-calls.jsonl | one JSON line per switch-to-configuration run |
| `health_dir`     | root/health/            | activation writes `status` (`ok`/`broken`)    |
| `gcroots`        | root/gcroots/           | for GC roots of builds under test             |

The sandbox root is baked into each build (fixture.json carries it), so a
toplevel built for one sandbox only ever acts on that sandbox.

## The toplevel

`nixos-version` (the version knob), `kernel`, `initrd` (symlinks to store
files), `kernel-modules` (symlink to a store dir holding `lib/modules/version`)
- each its own store path depending only on its knob, so equal knobs resolve
to equal targets as on NixOS - `init`, `activate`, `bin/switch-to-configuration`,
`switch-inhibitors` (only when the knob is not null), `configuration-revision`
(only when the knob is not null).

`bin/switch-to-configuration ACTION`:

- every valid action first appends `{"action", "toplevel", "time"}` (time:
  float seconds since the epoch) to `calls`;
- `dry-activate`: records, changes nothing, exits 0;
- `boot`: points `boot_default` at the toplevel, exits 0 (no activation);
- `switch`: points `boot_default` at the toplevel (as NixOS's switch also makes
  the boot default), then activates like `test`;
- `test`: runs `activate` (points `current_system` at the toplevel, writes
  `health_dir/status` with the health knob), then SIGTERMs the pid in
  `killPidfile` if set and readable, then per `activation`: `ok` exits 0,
  `fail` exits 4 (current_system already moved, as when NixOS units fail to
  start), `hang` execs `sleep hangSeconds` (same pid; kill it to end it);
- anything else (or nothing): usage on stderr, exit 1.

## Knobs (fixture.json `defaults`, overridable per host under `hosts.<host>`)

`version` ("1"), `failBuild` (false; the build prints 80 log lines then
"pullnix-fixture: build failed on purpose (knob failBuild=true)" and fails),
`buildSeconds` (0; the build sleeps this long first, for timeouts),
`notASystem` (false; true leaves out bin/switch-to-configuration),
`evalError` (null; a string makes evaluation `throw` with
"pullnix-fixture: evaluation error on purpose: <string>"), `activation`
("ok" | "fail" | "hang"), `hangSeconds` (600), `killPidfile` (null or a path),
`health` ("ok" | "broken"), `kernel`, `initrd`, `modules` (strings),
`inhibitors` (null or the switch-inhibitors content), `revision` (null or the
configuration-revision content). Python callers may spell knobs in
snake_case (`fail_build=True`) or camelCase; unknown knobs are a TypeError.

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

FIXTURE_DIR = Path(__file__).resolve().parents[1] / "fixtures" / "system"
FLAKE_FILE = "flake.nix"
KNOBS_FILE = "fixture.json"
SYSTEM = "x86_64-linux"
BUILD_FAILURE_TEXT = "pullnix-fixture: build failed on purpose (knob failBuild=true)"
EVAL_ERROR_TEXT = "pullnix-fixture: evaluation error on purpose"
#: Debian's nix-bin as root with a local store, offline: no sandbox, no build users (a
#: fresh machine has no nixbld group; root builds as itself without one), no substituters.
OFFLINE_NIX_CONFIG = ("sandbox = false\nbuild-users-group =\nsubstituters =\n"
                      "experimental-features = nix-command flakes\nwarn-dirty = false\n")

DEFAULT_KNOBS: dict[str, Any] = {
    "version": "1",
    "failBuild": False,
    "buildSeconds": 0,
    "notASystem": False,
    "evalError": None,
    "activation": "ok",
    "hangSeconds": 600,
    "killPidfile": None,
    "health": "ok",
    "kernel": "6.1.0-fixture",
    "initrd": "initrd-1",
    "modules": "modules-1",
    "inhibitors": None,
    "revision": None,
}
_SNAKE = {
    "fail_build": "failBuild",
    "build_seconds": "buildSeconds",
    "not_a_system": "notASystem",
    "eval_error": "evalError",
    "hang_seconds": "hangSeconds",
    "kill_pidfile": "killPidfile",
}
_ACTIVATIONS = ("ok", "fail", "hang")
_HEALTHS = ("ok", "broken")


@dataclass(frozen=True)
class Sandbox:
    """A fake machine's root: where the fixture's activation acts."""

    root: Path

    @property
    def current_system(self) -> Path:
        return self.root / "run" / "current-system"

    @property
    def booted_system(self) -> Path:
        return self.root / "run" / "booted-system"

    @property
    def profile(self) -> Path:
        return self.root / "profiles" / "system"

    @property
    def boot_default(self) -> Path:
        return self.root / "boot" / "default"

    @property
    def calls(self) -> Path:
        return self.root / "switch-calls.jsonl"

    @property
    def health_dir(self) -> Path:
        return self.root / "health"

    @property
    def gcroots(self) -> Path:
        return self.root / "gcroots"


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


def make_sandbox(tmp: Path) -> Sandbox:
    """Create an empty sandbox under `tmp`: directories, no systems yet."""
    sandbox = Sandbox(tmp.resolve() / "machine")
    for directory in (sandbox.root / "run", sandbox.root / "profiles", sandbox.root / "boot",
                      sandbox.health_dir, sandbox.gcroots):
        directory.mkdir(parents=True, exist_ok=True)
    return sandbox


def normalise_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knobs in fixture.json spelling; unknown names and bad values are a TypeError/ValueError."""
    out: dict[str, Any] = {}
    for key, value in knobs.items():
        name = _SNAKE.get(key, key)
        if name not in DEFAULT_KNOBS:
            raise TypeError(f"unknown fixture knob {key!r} (known: {', '.join(DEFAULT_KNOBS)})")
        if isinstance(value, Path):
            value = str(value)
        out[name] = value
    if out.get("activation", "ok") not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, not {out['activation']!r}")
    if out.get("health", "ok") not in _HEALTHS:
        raise ValueError(f"health must be one of {_HEALTHS}, not {out['health']!r}")
    return out


def write_fleet(
    worktree: Path,
    sandbox: Sandbox,
    *,
    hosts: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("edge-01",),
    version: str = "1",
    **knobs: Any,
) -> None:
    """Write the fixture's `flake.nix` and `fixture.json` into `worktree`; the caller commits.

    `hosts` is a list of host names, or a mapping host -> per-host knob overrides.
    """
    worktree.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE_DIR / FLAKE_FILE, worktree / FLAKE_FILE)
    per_host = {h: {} for h in hosts} if not isinstance(hosts, Mapping) else hosts
    doc = {
        "sandbox": str(sandbox.root),
        "defaults": {**DEFAULT_KNOBS, **normalise_knobs({"version": version, **knobs})},
        "hosts": {h: normalise_knobs(o) for h, o in per_host.items()},
    }
    (worktree / KNOBS_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


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
    doc.setdefault("defaults", {}).update(normalise_knobs(knobs))
    for host, overrides in (hosts or {}).items():
        doc.setdefault("hosts", {}).setdefault(host, {}).update(normalise_knobs(overrides))
    (repo.worktree / KNOBS_FILE).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    _write_files(repo.worktree, files)
    return _commit_and_push(repo.worktree, message or f"fleet: {sorted(knobs) or 'files'}")


def toplevel_attr(host: str) -> str:
    return f"nixosConfigurations.{host}.config.system.build.toplevel"


def build_toplevel(flake_ref: str, host: str) -> str:
    """Build the host's toplevel from `flake_ref` with plain `nix build`; return the store path."""
    result = subprocess.run(
        ["nix", "build", "--no-link", "--json", f"{flake_ref}#{toplevel_attr(host)}"],
        capture_output=True, text=True, check=False, timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"fixture build of {host} from {flake_ref} failed:\n{result.stderr}")
    return str(json.loads(result.stdout)[0]["outputs"]["out"])


def set_profile(sandbox: Sandbox, store_path: str) -> None:
    """Make `store_path` a new generation of the sandbox's system profile (as nixos-rebuild)."""
    subprocess.run(["nix-env", "-p", str(sandbox.profile), "--set", store_path],
                   check=True, capture_output=True, timeout=120)


def install_system(sandbox: Sandbox, store_path: str) -> None:
    """Pretend the fake machine was installed with and booted into `store_path`:
    a profile generation, the boot default, the current and the booted system."""
    set_profile(sandbox, store_path)
    for link in (sandbox.boot_default, sandbox.current_system, sandbox.booted_system):
        _symlink(link, store_path)


def boot_into(sandbox: Sandbox, store_path: str | None = None) -> None:
    """Simulate a reboot: booted and current system become the boot default (or `store_path`)."""
    target = store_path or os.readlink(sandbox.boot_default)
    for link in (sandbox.current_system, sandbox.booted_system):
        _symlink(link, target)


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


def _symlink(link: Path, target: str) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


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
        ["git", "-c", "commit.gpgsign=false", *args], cwd=cwd, capture_output=True, text=True,
        check=False, timeout=60, env={**os.environ, **_GIT_ENV},
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed in {cwd}:\n{result.stderr}")
    return result.stdout
