"""Can the demo run here? What this machine's Nix lacks, said as what is really wrong.

Owns the demo's preflight: the facts (is Nix installed, are we root, what state
the store is in, are `pullnix` and `pullnix-helper` at hand), the pure verdict
over them (`diagnose`), and the one thing it may do about them: create the store
of a Nix that never ran. Debian's nix-bin makes `/nix/store` only when Nix first
runs (as root, with no daemon), so right after `apt-get install nix-bin` there is
no store yet; that is not a permission problem, and the preflight does what that
first run would do (`nix-store --init`, which is also what scripts/install.sh
does).

Must not: build, or touch anything but the store's own directories.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

PROGRAMS = ("pullnix", "pullnix-helper")
NO_BUILD_USERS = "build-users-group =\n"  # a machine where Nix never ran has no nixbld group


class Store(enum.Enum):
    WRITABLE = "writable"
    READ_ONLY = "read-only"  # exists, and this user cannot write it
    MISSING = "missing"  # Nix never ran here


@dataclass(frozen=True)
class Facts:
    nix: bool  # `nix` and `nix-env` on PATH
    root: bool
    store: Store
    store_dir: str
    missing_programs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Ready:
    pass


@dataclass(frozen=True)
class CreateStore:
    """Nix never ran and we are root: make the store as Nix's first run would."""


@dataclass(frozen=True)
class Problem:
    message: str


Verdict = Ready | CreateStore | Problem


def diagnose(facts: Facts) -> Verdict:
    """What stands between this machine and the demo, or Ready."""
    store = facts.store_dir
    if not facts.nix:
        return Problem(
            "Nix is not installed: `apt-get install nix-bin` (scripts/install.sh does it); "
            "the demo builds a small fake NixOS system with real Nix"
        )
    if facts.store is Store.MISSING:
        if not facts.root:
            return Problem(
                f"there is no Nix store yet ({store} does not exist: Nix has never run on "
                "this machine), and only root can create it: run the demo as root "
                "(Debian's nix-bin has no daemon, so root owns the store)"
            )
        return CreateStore()
    if facts.store is Store.READ_ONLY:
        if not facts.root:
            return Problem(
                f"cannot write to {store}: run the demo as root (Debian's nix-bin has no "
                "daemon, so only root can build)"
            )
        return Problem(
            f"cannot write to {store} even as root: is it on a read-only file system? "
            "The demo builds into the local store"
        )
    if facts.missing_programs:
        return Problem(
            f"cannot find the `{facts.missing_programs[0]}` program next to this one or on PATH"
        )
    return Ready()


def store_dir() -> Path:
    return Path(os.environ.get("NIX_STORE_DIR") or "/nix/store")


def gather(find_program: Callable[[str], str | None]) -> Facts:
    store = store_dir()
    if not store.is_dir():
        state = Store.MISSING
    elif os.access(store, os.W_OK):
        state = Store.WRITABLE
    else:
        state = Store.READ_ONLY
    return Facts(
        nix=shutil.which("nix") is not None and shutil.which("nix-env") is not None,
        root=os.geteuid() == 0,
        store=state,
        store_dir=str(store),
        missing_programs=tuple(p for p in PROGRAMS if find_program(p) is None),
    )


def create_store() -> str:
    """`nix-store --init`; "" when it worked, else what Nix said."""
    env = {**os.environ, "NIX_CONFIG": os.environ.get("NIX_CONFIG", "") + "\n" + NO_BUILD_USERS}
    try:
        done = subprocess.run(
            ["nix-store", "--init"],
            check=False,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def check(find_program: Callable[[str], str | None], say: Callable[[str], None]) -> str:
    """Run the preflight: "" when the demo can run, else what is wrong and what to do."""
    verdict = diagnose(gather(find_program))
    if isinstance(verdict, CreateStore):
        store = store_dir()
        say(f"No Nix store yet ({store}: Nix has never run here); creating it: nix-store --init")
        error = create_store()
        if error:
            return (
                f"there is no Nix store yet ({store}) and `nix-store --init` could not "
                f"create it: {error}"
            )
        verdict = diagnose(gather(find_program))
        if isinstance(verdict, CreateStore):
            return f"`nix-store --init` succeeded, but {store} still does not exist"
    return verdict.message if isinstance(verdict, Problem) else ""
