"""Observe the machine's systems: the system profile's generations, the current and booted system.

Owns reading Nix's own profile layout - `<profile>` is a symlink to
`<profile>-<N>-link`, each of which points at a store path - and the
`current-system` / `booted-system` links, into a frozen SystemObservation.
Every path is a setting (from the machine config's `[system]`), so tests
observe a sandbox. Reads symlinks only: no Nix command runs, so observing
is cheap and works while the store is busy. Must not: change anything.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from reconciler.common.config import SystemConfig

STORE_DIR = os.environ.get("NIX_STORE_DIR", "/nix/store")
_MAX_HOPS = 40


@dataclass(frozen=True)
class Generation:
    """One generation of a profile: its number, store path and when it was made."""

    number: int
    store_path: str
    created: float  # seconds since the epoch (the link's mtime, as nix-env shows it)
    current: bool


@dataclass(frozen=True)
class SystemObservation:
    """The systems on this machine, as the links say right now."""

    profile: Path
    current_generation: int | None
    profile_system: str | None  # the store path the profile points at
    generations: tuple[Generation, ...]  # ascending by number
    current_system: str | None  # what runs now (store path)
    booted_system: str | None  # what the machine booted (store path)

    def generation(self, number: int) -> Generation | None:
        return next((g for g in self.generations if g.number == number), None)

    def generation_of(self, store_path: str) -> Generation | None:
        """The newest generation pointing at `store_path`."""
        matches = [g for g in self.generations if g.store_path == store_path]
        return matches[-1] if matches else None


def observe_system(settings: SystemConfig) -> SystemObservation:
    """Read the profile, current and booted system named by `settings`."""
    generations = list_generations(settings.profile)
    current = current_generation(settings.profile)
    return SystemObservation(
        profile=settings.profile,
        current_generation=current,
        profile_system=resolve_store_path(settings.profile),
        generations=tuple(
            Generation(g.number, g.store_path, g.created, g.number == current) for g in generations
        ),
        current_system=resolve_store_path(settings.current_system),
        booted_system=resolve_store_path(settings.booted_system),
    )


def list_generations(profile: Path) -> tuple[Generation, ...]:
    """Every `<profile>-<N>-link` next to `profile`, ascending; dangling links are skipped."""
    pattern = re.compile(re.escape(profile.name) + r"-(\d+)-link")
    found: list[Generation] = []
    try:
        entries = list(os.scandir(profile.parent))
    except FileNotFoundError:
        return ()
    for entry in entries:
        match = pattern.fullmatch(entry.name)
        if match is None or not entry.is_symlink():
            continue
        target = resolve_store_path(Path(entry.path))
        if target is None:
            continue
        created = entry.stat(follow_symlinks=False).st_mtime
        found.append(Generation(int(match.group(1)), target, created, current=False))
    return tuple(sorted(found, key=lambda g: g.number))


def current_generation(profile: Path) -> int | None:
    """The generation number the profile link points at, or None if there is no profile."""
    try:
        target = os.readlink(profile)
    except (FileNotFoundError, OSError):
        return None
    match = re.fullmatch(re.escape(profile.name) + r"-(\d+)-link", Path(target).name)
    return int(match.group(1)) if match else None


def resolve_store_path(link: Path) -> str | None:
    """Follow `link` until it names a store path (`/nix/store/<name>`); None if it does not exist.

    Stops at the store path rather than resolving every link, so a store path
    that is itself a symlink, or a /nix that is a mount elsewhere, compares equal.
    """
    path = str(link)
    for _ in range(_MAX_HOPS):
        if os.path.dirname(path) == STORE_DIR:
            return path if os.path.lexists(path) else None
        try:
            target = os.readlink(path)
        except FileNotFoundError:
            return None
        except OSError:  # not a link: a plain path outside the store
            return path
        path = os.path.normpath(os.path.join(os.path.dirname(path), target))
    return None
