"""The cached Debian root the system tier boots: built once by debootstrap, never dirtied.

Owns `tests/.cache/debian-root-<key>/`, a minimal Debian 12 root with systemd,
dbus, git, python3 and Debian's nix-bin, plus a venv (/opt/pullnix/venv) holding
pullnix's dependencies from wheels made on the host. `<key>` hashes the package
list, the dependency list of pyproject.toml, the settings written into the root
and the source of the recipe function itself, so changing any of them builds a
new root beside the old one.
A root is built in a temporary directory and renamed into place only when
complete, under a lock, so an interrupted build never leaves a half root that a
later run trusts. Containers never boot the cached root itself: `Container`
mounts an overlay over it (or copies it).

Must not: touch the host's /nix, /etc or systemd; everything it writes is under
the cache directory.
"""

from __future__ import annotations

import fcntl
import hashlib
import inspect
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

CACHE_DIR = Path(__file__).resolve().parents[1] / ".cache"
PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"
AGENT_VENV = "/opt/pullnix/venv"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "git",
    "python3",
    "python3-venv",  # the agent's venv, built from host-made wheels
    "nix-bin",
    # Debian's nix-daemon.service and .socket: the agent builds through the daemon, as
    # on NixOS (it is unprivileged); the socket admits the nix-users group.
    "nix-setup-systemd",
    # nix-bin needs libdbd-sqlite3-perl, which needs the virtual perl-dbdabi-94;
    # debootstrap cannot resolve virtual packages, so name its provider.
    "libdbi-perl",
)
# Real Nix inside the container, as the suite uses it on the host: no sandbox and
# no build users (we are root), no substituters (no network), flakes on.
NIX_CONF = (
    "sandbox = false\n"
    "build-users-group =\n"
    "substituters =\n"
    "experimental-features = nix-command flakes\n"
    "warn-dirty = false\n"
)
# Daily timers do nothing useful in a container that lives for seconds.
MASKED_UNITS = (
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
)
HOSTNAME = "pullnix-test"
BUILD_TIMEOUT = 900.0


class RootBuildError(Exception):
    """debootstrap or a recipe step failed; the message carries the log's tail."""


@dataclass(frozen=True)
class CachedRoot:
    path: Path
    key: str
    built_seconds: float | None  # None: found in the cache


def root_key() -> str:
    """The hash naming the cached root: packages, settings and the recipe's own source."""
    recipe = {
        "suite": SUITE,
        "packages": PACKAGES,
        "nix.conf": NIX_CONF,
        "masked": MASKED_UNITS,
        "hostname": HOSTNAME,
        "agent dependencies": agent_dependencies(),
        "recipe": inspect.getsource(_build_into),
    }
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]


def ensure_root(cache_dir: Path = CACHE_DIR) -> CachedRoot:
    """The cached root for the current recipe, building it first if it is missing."""
    key = root_key()
    final = cache_dir / f"debian-root-{key}"
    if (final / "usr").is_dir():
        return CachedRoot(final, key, None)
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _locked(cache_dir / "debian-root.lock"):
        if (final / "usr").is_dir():  # another session built it while we waited
            return CachedRoot(final, key, None)
        for stale in cache_dir.glob(".debian-root-*.building"):
            _remove_tree(stale)  # an interrupted build: nobody else builds while we hold the lock
        building = cache_dir / f".debian-root-{key}.building"
        started = time.monotonic()
        try:
            _build_into(building, cache_dir / f"debian-root-{key}.log")
        except BaseException:
            _remove_tree(building)
            raise
        building.rename(final)
        _prune(cache_dir, keep=final)
        return CachedRoot(final, key, time.monotonic() - started)


def _prune(cache_dir: Path, keep: Path) -> None:
    """Remove roots of older recipes that no mounted overlay still uses."""
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        in_use = mountinfo.read()
    for old in cache_dir.glob("debian-root-*"):
        if old != keep and old.is_dir() and str(old) not in in_use:
            _remove_tree(old)
            old.with_name(old.name + ".log").unlink(missing_ok=True)


def _build_into(root: Path, log_path: Path) -> None:
    """debootstrap the packages into `root`, settle it for fast, quiet boots, and give it
    the agent's venv with pullnix's dependencies (pullnix itself is installed per test)."""
    with log_path.open("wb") as log:
        _step(
            log,
            log_path,
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(PACKAGES)}",
                SUITE,
                str(root),
                MIRROR,
            ],
        )
        _unmount_under(root)  # debootstrap mounts /proc and /sys in the target while it works
        for deb in (root / "var/cache/apt/archives").glob("*.deb"):
            deb.unlink()
        (root / "etc/nix").mkdir(parents=True, exist_ok=True)
        (root / "etc/nix/nix.conf").write_text(NIX_CONF)
        (root / "etc/hostname").write_text(HOSTNAME + "\n")
        # A persistent journal: after a power cut and a reboot, the last boot's log is there.
        (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
        machine_id = root / "etc/machine-id"
        if len(machine_id.read_text().strip()) != 32:
            machine_id.write_text(hashlib.sha256(str(root).encode()).hexdigest()[:32] + "\n")
        for unit in MASKED_UNITS:
            link = root / "etc/systemd/system" / unit
            link.unlink(missing_ok=True)
            link.symlink_to("/dev/null")
        # Wheels made on the host (its pip reaches the package indexes), installed by the
        # container's own python3 in a chroot, offline.
        wheelhouse = root / "tmp" / "wheelhouse"
        _step(
            log,
            log_path,
            [
                sys.executable,
                "-m",
                "pip",
                "wheel",
                "--quiet",
                "--wheel-dir",
                str(wheelhouse),
                *agent_dependencies(),
            ],
            env=dict(os.environ),
        )
        _step(log, log_path, ["chroot", str(root), "/usr/bin/python3", "-m", "venv", AGENT_VENV])
        _step(
            log,
            log_path,
            [
                "chroot",
                str(root),
                f"{AGENT_VENV}/bin/pip",
                "install",
                "--quiet",
                "--no-index",
                "--no-cache-dir",
                "--find-links",
                "/tmp/wheelhouse",
                *agent_dependencies(),
            ],
        )
        shutil.rmtree(wheelhouse)
    subprocess.run(["sync", "-f", str(root)], check=True)


def agent_dependencies() -> list[str]:
    """pullnix's runtime dependencies, as pyproject.toml lists them."""
    with PYPROJECT.open("rb") as handle:
        return list(tomllib.load(handle)["project"]["dependencies"])


def _step(
    log: BinaryIO, log_path: Path, argv: list[str], env: dict[str, str] | None = None
) -> None:
    log.write(f"\n==== {' '.join(argv)}\n".encode())
    log.flush()
    try:
        subprocess.run(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=True,
            timeout=BUILD_TIMEOUT,
            env=env or _tool_env(),
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        log.flush()
        raise RootBuildError(
            f"building the system tier's root: {exc}; log {log_path}:\n{_tail(log_path)}"
        ) from None


def _tool_env() -> dict[str, str]:
    return {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "DEBIAN_FRONTEND": "noninteractive",
    }


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def mounts_under(path: Path) -> list[Path]:
    """Mount points at or below `path`, deepest first."""
    prefix = str(path.resolve())
    found = []
    with open("/proc/self/mountinfo", encoding="utf-8") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].encode().decode("unicode_escape")
            if point == prefix or point.startswith(prefix + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def _unmount_under(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "--lazy", str(point)], check=False)


def _remove_tree(path: Path) -> None:
    """Remove a root, never following a mount out of it (a killed debootstrap leaves /proc)."""
    if not path.exists():
        return
    _unmount_under(path)
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as exc:
        return f"(cannot read {path}: {exc})"
