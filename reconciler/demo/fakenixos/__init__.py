"""A FAKE NixOS system that real Nix builds: for `pullnix demo` and for the test suite.

Owns the Python side of `flake.nix` beside this file: the sandbox layout, the
knobs, and the files that make a fleet repository of it. It is not NixOS and
says so in every name it builds (`nixos-system-<host>-<version>` built by
`/bin/sh`, no nixpkgs, no inputs). Must not: touch the real machine (`/run`,
`/boot`, `/nix/var/nix/profiles`); everything acts under a sandbox root.

## The sandbox (`make_sandbox(tmp)`)

| property         | path                    | what                                          |
|------------------|-------------------------|-----------------------------------------------|
| `current_system` | root/run/current-system | symlink, set by activation (`switch`, `test`) |
| `booted_system`  | root/run/booted-system  | symlink, set by `install_system`              |
| `profile`        | root/profiles/system    | a real Nix profile (`nix-env -p ... --set`)   |
| `boot_default`   | root/boot/default       | fake bootloader entry (`switch`, `boot`)      |
| `calls`          | root/switch-calls.jsonl | one JSON line per switch-to-configuration run |
| `health_dir`     | root/health/            | activation writes `status` (`ok`/`broken`)    |
| `gcroots`        | root/gcroots/           | for GC roots of builds                        |

The sandbox root is baked into each build (fixture.json carries it), so a
toplevel built for one sandbox only ever acts on that sandbox. A fleet of fake
machines shares one repository: fixture.json's optional `sandboxes` maps a
host to its own sandbox root (the others use `sandbox`).

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
fixture.json also names the Nix `system` (this machine's, e.g. x86_64-linux).
"""

from __future__ import annotations

import json
import platform
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FLAKE_SOURCE = Path(__file__).resolve().parent / "flake.nix"
FLAKE_FILE = "flake.nix"
KNOBS_FILE = "fixture.json"
#: Debian's nix-bin as root with a local store, offline: no sandbox, no build users (a
#: fresh machine has no nixbld group; root builds as itself without one), no substituters.
OFFLINE_NIX_CONFIG = (
    "sandbox = false\nbuild-users-group =\nsubstituters =\n"
    "experimental-features = nix-command flakes\nwarn-dirty = false\n"
)

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
    """A fake machine's root: where the fake system's activation acts."""

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


def make_sandbox(tmp: Path) -> Sandbox:
    """Create an empty sandbox under `tmp`: directories, no systems yet."""
    sandbox = Sandbox(tmp.resolve() / "machine")
    for directory in (
        sandbox.root / "run",
        sandbox.root / "profiles",
        sandbox.root / "boot",
        sandbox.health_dir,
        sandbox.gcroots,
    ):
        directory.mkdir(parents=True, exist_ok=True)
    return sandbox


def nix_system() -> str:
    """This machine's Nix system name (x86_64-linux, aarch64-linux, ...)."""
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine) + "-linux"


def normalise_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """Knobs in fixture.json spelling; unknown names and bad values are a TypeError/ValueError."""
    out: dict[str, Any] = {}
    for key, value in knobs.items():
        name = _SNAKE.get(key, key)
        if name not in DEFAULT_KNOBS:
            raise TypeError(f"unknown fixture knob {key!r} (known: {', '.join(DEFAULT_KNOBS)})")
        out[name] = str(value) if isinstance(value, Path) else value
    if out.get("activation", "ok") not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {_ACTIVATIONS}, not {out['activation']!r}")
    if out.get("health", "ok") not in _HEALTHS:
        raise ValueError(f"health must be one of {_HEALTHS}, not {out['health']!r}")
    return out


def knobs_document(
    sandbox: Sandbox,
    *,
    hosts: Sequence[str] | Mapping[str, Mapping[str, Any]] = ("edge-01",),
    version: str = "1",
    **knobs: Any,
) -> dict[str, Any]:
    """fixture.json's content: `hosts` is a list of names, or host -> knob overrides."""
    per_host = {h: {} for h in hosts} if not isinstance(hosts, Mapping) else hosts
    return {
        "sandbox": str(sandbox.root),
        "system": nix_system(),
        "defaults": {**DEFAULT_KNOBS, **normalise_knobs({"version": version, **knobs})},
        "hosts": {h: normalise_knobs(o) for h, o in per_host.items()},
    }


def with_knobs(
    doc: Mapping[str, Any], *, hosts: Mapping[str, Mapping[str, Any]] | None = None, **knobs: Any
) -> dict[str, Any]:
    """A copy of a fixture.json document with knobs changed (defaults, or per host)."""
    out = json.loads(json.dumps(doc))
    out.setdefault("defaults", {}).update(normalise_knobs(knobs))
    for host, overrides in (hosts or {}).items():
        out.setdefault("hosts", {}).setdefault(host, {}).update(normalise_knobs(overrides))
    return dict(out)


def render_knobs(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def toplevel_attr(host: str) -> str:
    return f"nixosConfigurations.{host}.config.system.build.toplevel"


def set_profile(sandbox: Sandbox, store_path: str) -> None:
    """Make `store_path` a new generation of the sandbox's system profile (as nixos-rebuild)."""
    subprocess.run(
        ["nix-env", "-p", str(sandbox.profile), "--set", store_path],
        check=True,
        capture_output=True,
        timeout=120,
    )


def install_system(sandbox: Sandbox, store_path: str) -> None:
    """Pretend the fake machine was installed with and booted into `store_path`:
    a profile generation, the boot default, the current and the booted system."""
    set_profile(sandbox, store_path)
    for link in (sandbox.boot_default, sandbox.current_system, sandbox.booted_system):
        symlink(link, store_path)


def symlink(link: Path, target: str) -> None:
    """Point `link` at `target`, replacing it atomically."""
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(f".{link.name}.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)
