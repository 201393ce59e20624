"""Facts about a built system compared with the running and booted ones, for decisions and status.

Owns reading a toplevel's facts: the closure diff against the running system
(`nix store diff-closures OLD NEW`, parsed into entries and kept as text),
whether a reboot is needed (the resolved `kernel`, `initrd` or
`kernel-modules` differ from the booted system's), and both systems'
`switch-inhibitors`. The policy over those facts (a switch becoming a boot,
which components count) is pure and lives in `reconciler.core.activation`;
this shell only reads files and runs Nix. Must not: activate anything, or
decide what to do about a reboot.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.activation import (
    BOOT_COMPONENTS,
    ActivationPlan,
    boot_components_changed,
    plan_activation,
)
from reconciler.nix.errors import NixCommandFailed, first_error
from reconciler.nix.observe import resolve_store_path
from reconciler.nix.process import FEATURES, run_nix

INHIBITORS_FILE = "switch-inhibitors"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_SIZE = re.compile(r"(?:^|, )([+-]\d+(?:\.\d+)?) KiB$")
_ARROW = " \u2192 "  # Nix prints "old → new"
_ABSENT, _EMPTY = "\u2205", "\u03b5"  # ∅ (not in the closure), ε (no version)


@dataclass(frozen=True)
class ClosureChange:
    """One package name whose versions or size changed; () versions = absent from that side."""

    name: str
    before: tuple[str, ...]
    after: tuple[str, ...]
    size_delta: int | None  # bytes, when Nix shows it (at least 8 KiB)

    @property
    def added(self) -> bool:
        return not self.before and bool(self.after)

    @property
    def removed(self) -> bool:
        return bool(self.before) and not self.after


@dataclass(frozen=True)
class ClosureDiff:
    changes: tuple[ClosureChange, ...]
    text: str


@dataclass(frozen=True)
class SystemFacts:
    """What differs between a new system and the machine's running and booted ones."""

    new_system: str
    running_system: str | None
    booted_system: str | None
    closure_diff: ClosureDiff | None  # None without a running system
    reboot_components: tuple[str, ...]  # which of BOOT_COMPONENTS differ from the booted system
    running_inhibitors: str | None
    new_inhibitors: str | None
    version: str | None  # the new system's nixos-version
    revision: str | None  # the new system's configuration-revision

    @property
    def reboot_needed(self) -> bool:
        return bool(self.reboot_components)

    def activation(self, requested: str) -> ActivationPlan:
        """The action to run for `requested`, switch inhibitors considered."""
        return plan_activation(requested, self.running_inhibitors, self.new_inhibitors)


def gather_facts(
    new_system: str,
    running_system: str | None,
    booted_system: str | None,
    *,
    timeout: float = 300.0,
    search_path: str | None = None,
) -> SystemFacts:
    """Everything above for `new_system`; a missing running or booted system yields no diff."""
    booted_files = boot_files(booted_system) if booted_system else {}
    return SystemFacts(
        new_system=new_system,
        running_system=running_system,
        booted_system=booted_system,
        closure_diff=(
            closure_diff(running_system, new_system, timeout=timeout, search_path=search_path)
            if running_system
            else None
        ),
        reboot_components=(
            boot_components_changed(booted_files, boot_files(new_system)) if booted_system else ()
        ),
        running_inhibitors=read_inhibitors(running_system),
        new_inhibitors=read_inhibitors(new_system),
        version=_read(new_system, "nixos-version"),
        revision=_read(new_system, "configuration-revision"),
    )


def closure_diff(
    old: str, new: str, *, timeout: float = 300.0, search_path: str | None = None
) -> ClosureDiff:
    """`nix store diff-closures old new`, parsed."""
    env = None if search_path is None else {**os.environ, "PATH": search_path}
    run = run_nix(["nix", *FEATURES, "store", "diff-closures", old, new], timeout=timeout, env=env)
    if not run.ok:
        raise NixCommandFailed(
            f"comparing the closures of {old} and {new} failed: {first_error(run.tail)}"
        )
    text = _ANSI.sub("", run.stdout)
    return ClosureDiff(parse_diff_closures(text), text)


def parse_diff_closures(text: str) -> tuple[ClosureChange, ...]:
    """Parse Nix's `name: 1.0 → 1.1, +12.5 KiB` lines; lines that are not changes are skipped."""
    changes = []
    for line in _ANSI.sub("", text).splitlines():
        name, sep, rest = line.partition(": ")
        if not sep or not name.strip():
            continue
        size: int | None = None
        match = _SIZE.search(rest)
        if match:
            size = round(float(match.group(1)) * 1024)
            rest = rest[: match.start()]
        before, arrow, after = rest.partition(_ARROW)
        if not arrow and size is None:
            continue
        changes.append(
            ClosureChange(
                name.strip(),
                _versions(before) if arrow else (),
                _versions(after) if arrow else (),
                size,
            )
        )
    return tuple(changes)


def read_inhibitors(system: str | None) -> str | None:
    """A system's `switch-inhibitors` file, or None when it has none (or there is no system)."""
    return _read(system, INHIBITORS_FILE) if system else None


def boot_files(system: str) -> dict[str, str | None]:
    """The resolved store paths of the system's kernel, initrd and kernel-modules."""
    return {name: resolve_store_path(Path(system, name)) for name in BOOT_COMPONENTS}


def _versions(text: str) -> tuple[str, ...]:
    text = text.strip()
    if not text or text == _ABSENT:
        return ()
    return tuple("" if v == _EMPTY else v for v in text.split(", "))


def _read(system: str, name: str) -> str | None:
    try:
        return Path(system, name).read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
