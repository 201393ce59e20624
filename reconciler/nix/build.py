"""Build a host's NixOS system (its toplevel) with Nix, straight from the mirror at one commit.

Owns turning (mirror, ref, commit, attribute template, host) into a store
path: `nix build --json git+file://MIRROR?ref=REF&rev=SHA#<attr>.config.system.build.toplevel`
for flakes, `nix-build '<nixpkgs/nixos>' -A system -I nixos-config=...` for a
classic configuration already exported to a directory. Nix's log is
streamed line by line (see `process`); the built path is held by a GC root
(an out-link in a directory this module owns) until `release` is called
once the system is committed or abandoned; a result without
`bin/switch-to-configuration` is refused (NotASystem). Failures become the
typed errors of `errors`.

Must not: fetch or export git trees (the source layer does), activate
anything, or decide whether to build.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from reconciler.core.errors import PullnixError, TerminalError
from reconciler.nix.errors import (
    BuildFailed,
    ConfigurationMissing,
    EvaluationError,
    FlakeAttributeMissing,
    NixCommandFailed,
    NixpkgsMissing,
    NixStoreBusy,
    NotASystem,
    RevisionNotInMirror,
    classify,
    first_error,
    with_tail,
)
from reconciler.nix.process import FEATURES, LineCallback, NixRun, run_nix

TOPLEVEL = "config.system.build.toplevel"
LOG_FORMAT = ("--log-format", "bar-with-logs")
_HOST = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_ATTR = re.compile(r'[A-Za-z0-9_\'".-]+')
_DRV = re.compile(r"(/nix/store/[^ ']+\.drv)")


class InvalidAttribute(TerminalError):
    reason = "InvalidFlakeAttribute"


@dataclass(frozen=True)
class BuildSettings:
    """Where GC roots go, how long a build may take, and (for tests) the PATH to find Nix on."""

    gcroots_dir: Path
    timeout: float = 3600.0
    search_path: str | None = None  # PATH for Nix; None: this process's PATH
    extra_args: tuple[str, ...] = ()  # e.g. ("--option", "cores", "2")

    def env(self) -> dict[str, str] | None:
        return None if self.search_path is None else {**os.environ, "PATH": self.search_path}


@dataclass(frozen=True)
class BuiltSystem:
    """A built toplevel, kept alive by `gc_root` until `release`."""

    store_path: str
    gc_root: Path
    installable: str
    revision: str | None
    seconds: float


def toplevel_attr(template: str, host: str) -> str:
    """The toplevel's attribute path: the template with `{host}` filled, plus TOPLEVEL.

    `nixosConfigurations.{host}` and `edge-01` give
    `nixosConfigurations.edge-01.config.system.build.toplevel`.
    A host name with dots is quoted as one attribute (`"edge.example.org"`).
    """
    if not _HOST.fullmatch(host):
        raise InvalidAttribute(
            f"host name {host!r} cannot name a flake attribute; use letters, "
            "digits, '.', '_' and '-' (set `host` in the machine config)"
        )
    filled = template.replace("{host}", f'"{host}"' if "." in host else host)
    if not template or not _ATTR.fullmatch(filled) or "{" in filled:
        raise InvalidAttribute(
            f"spec.configuration.flake {template!r} is not an attribute path such as "
            "'nixosConfigurations.{host}' ({host} is the only placeholder)"
        )
    return f"{filled}.{TOPLEVEL}"


def flake_installable(mirror: Path, ref: str, sha: str, template: str, host: str) -> str:
    """The exact installable pullnix builds: the mirror pinned at `sha`, the host's toplevel."""
    if not _SHA.fullmatch(sha):
        raise ValueError(f"{sha!r} is not a full commit id")
    url = f"git+file://{quote(str(mirror.resolve()))}?ref={quote(ref, safe='/')}&rev={sha}"
    return f"{url}#{toplevel_attr(template, host)}"


def build_flake(
    mirror: Path,
    ref: str,
    sha: str,
    template: str,
    host: str,
    settings: BuildSettings,
    on_line: LineCallback | None = None,
) -> BuiltSystem:
    """Build the host's toplevel from `mirror` at `sha`; return it held by a GC root."""
    installable = flake_installable(mirror, ref, sha, template, host)
    root = gc_root(settings, host, sha)
    argv = [
        "nix",
        *FEATURES,
        "build",
        "--json",
        "--out-link",
        str(root),
        *LOG_FORMAT,
        *settings.extra_args,
        installable,
    ]
    run = run_nix(argv, timeout=settings.timeout, on_line=on_line, env=settings.env())
    if not run.ok:
        raise _failure(
            run,
            f"{toplevel_attr(template, host)} at {sha[:12]}",
            where=(f"the flake in {mirror} at commit {sha[:12]} (ref {ref})"),
        )
    try:
        store_path = str(json.loads(run.stdout)[0]["outputs"]["out"])
    except (ValueError, LookupError, TypeError):
        raise NixCommandFailed(
            f"nix build printed no store path for {installable}: {run.stdout[:200]!r}"
        ) from None
    return require_system(BuiltSystem(store_path, root, installable, sha, run.seconds))


def build_classic(
    exported: Path,
    template: str,
    host: str,
    settings: BuildSettings,
    revision: str | None = None,
    on_line: LineCallback | None = None,
) -> BuiltSystem:
    """Build a classic configuration (`hosts/{host}/configuration.nix` in an exported tree)."""
    rel = template.replace("{host}", host)
    config = (exported / rel).resolve()
    if not _HOST.fullmatch(host) or not config.is_relative_to(exported.resolve()):
        raise InvalidAttribute(
            f"spec.configuration.classic {template!r} with host {host!r} "
            "does not name a file inside the repository"
        )
    if not config.is_file():
        raise ConfigurationMissing(
            f"{rel} does not exist at revision {revision or '?'}; "
            f"check spec.configuration.classic ({template!r})"
        )
    root = gc_root(settings, host, revision or "classic")
    argv = [
        "nix-build",
        "<nixpkgs/nixos>",
        "-A",
        "system",
        "-I",
        f"nixos-config={config}",
        "--out-link",
        str(root),
        *LOG_FORMAT,
        *settings.extra_args,
    ]
    run = run_nix(
        argv, timeout=settings.timeout, on_line=on_line, env=settings.env(), cwd=str(exported)
    )
    if not run.ok:
        raise _failure(run, f"the classic configuration {rel}", where=f"{rel}")
    lines = [line for line in run.stdout.splitlines() if line.startswith("/")]
    if not lines:
        raise NixCommandFailed(f"nix-build printed no store path for {rel}")
    return require_system(
        BuiltSystem(lines[-1], root, f"nixos-config={config}", revision, run.seconds)
    )


def release(built: BuiltSystem) -> None:
    """Drop the GC root of `built` (once the system is committed to the profile or abandoned)."""
    try:
        if os.readlink(built.gc_root) == built.store_path:
            built.gc_root.unlink()
    except FileNotFoundError:
        pass


def held_roots(settings: BuildSettings) -> dict[Path, str]:
    """GC roots this driver holds now (link -> store path), e.g. to release after a crash."""
    roots: dict[Path, str] = {}
    if settings.gcroots_dir.is_dir():
        for link in settings.gcroots_dir.iterdir():
            if link.is_symlink():
                roots[link] = os.readlink(link)
    return roots


def gc_root(settings: BuildSettings, host: str, revision: str) -> Path:
    settings.gcroots_dir.mkdir(parents=True, exist_ok=True)
    return settings.gcroots_dir.resolve() / f"system-{host}-{revision}"


def require_system(built: BuiltSystem) -> BuiltSystem:
    switch = Path(built.store_path, "bin", "switch-to-configuration")
    if not os.access(switch, os.X_OK):
        release(built)
        raise NotASystem(
            f"{built.store_path} (built from {built.installable}) is not a NixOS system: it has "
            "no executable bin/switch-to-configuration; point spec.configuration at a NixOS "
            "configuration (pullnix builds <attr>.config.system.build.toplevel)"
        )
    return built


def _failure(run: NixRun, what: str, where: str) -> PullnixError:
    kind = classify(run.tail)
    summary = first_error(run.tail)
    if kind is FlakeAttributeMissing:
        return FlakeAttributeMissing(
            f"{where} has no attribute for this host: {summary}. Check spec.configuration.flake "
            "and that this host is defined in the flake"
        )
    if kind is RevisionNotInMirror:
        return RevisionNotInMirror(
            f"{where} is not available: {summary}; retrying after the next fetch"
        )
    if kind is NixStoreBusy:
        return NixStoreBusy(f"Nix could not build {what} now: {summary}; retrying")
    if kind is NixpkgsMissing:
        return NixpkgsMissing(
            f"building {what} needs <nixpkgs> on the Nix search path: {summary}. Add a channel "
            "(nix-channel --add https://nixos.org/channels/nixos-unstable nixos), set "
            "NIX_PATH=nixpkgs=..., or describe the system as a flake"
        )
    if kind is BuildFailed:
        drv = next((m.group(1) for line in run.tail if (m := _DRV.search(line))), None)
        hint = f"full log: nix log {drv}" if drv else ""
        message = with_tail(f"building {what} failed: {summary}", run.tail, hint)
        return BuildFailed(message, run.tail)
    return EvaluationError(with_tail(f"evaluating {what} failed: {summary}", run.tail))
