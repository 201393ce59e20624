"""A prebuilt system for this host: the lock in the commit, its history, the fetch.

Owns the agent's side of `configuration.prebuilt` (docs/prebuilt.md): read
the SystemLock file from the commit being deployed (never a checkout; a
lock that is missing, a directory or a symbolic link is InvalidSpec, tied to
the commit),
refuse a lock whose `sourceRevision` is not an ancestor of that commit (a
lock copied from another history), take this host's store path, and have Nix
fetch it from the machine's substituters, checked against the machine's
trusted keys. What comes back is held and handed on exactly like a
build: gates, helper and health checks follow as for any system.

Must not: evaluate or build anything on the machine, or trust anything the
repository says about keys or caches (those are agent.toml's).
"""

from __future__ import annotations

from reconciler.common.config import MachineConfig
from reconciler.core.lock import (
    MAX_LOCK_BYTES,
    InvalidLock,
    LockFromAnotherHistory,
    host_entry,
    parse_lock,
)
from reconciler.core.model import Prebuilt
from reconciler.nix.build import BuildSettings, BuiltSystem
from reconciler.nix.process import LineCallback
from reconciler.nix.realise import UntrustedSignature, realise_system
from reconciler.source import FileMissing, FileTooLarge, GitSource


def fetch_prebuilt(
    source: GitSource,
    machine: MachineConfig,
    prebuilt: Prebuilt,
    sha: str,
    settings: BuildSettings,
    on_line: LineCallback | None = None,
) -> BuiltSystem:
    """This host's system from the lock in commit `sha`, fetched and held by a GC root."""
    origin = f"{prebuilt.lock_file}@{sha[:12]}"
    _require_trust_roots(machine, sha)
    lock = parse_lock(_read_lock(source, sha, prebuilt.lock_file), origin)
    if not source.descends(sha, lock.source_revision):
        raise LockFromAnotherHistory(
            f"{origin}: sourceRevision {lock.source_revision[:12]} is not an ancestor of "
            f"{sha[:12]}, the commit carrying the lock: it was published from another "
            "history and is refused. Merge the commit CI built into the deploy branch "
            "before committing its lock"
        )
    entry = host_entry(lock, machine.host, origin)
    return realise_system(
        entry.store_path,
        host=machine.host,
        revision=sha,
        substituters=machine.nix.substituters,
        trusted_keys=machine.nix.trusted_public_keys,
        settings=settings,
        on_line=on_line,
    )


def _read_lock(source: GitSource, sha: str, lock_file: str) -> bytes:
    """The lock's bytes; one that is missing, a directory or a symbolic link in the commit,
    or larger than a lock may be (judged before it is unpacked), is InvalidLock: tied to
    the commit (not retried every pass) and naming lockFile."""
    try:
        return source.read_file(sha, lock_file, limit=MAX_LOCK_BYTES)
    except FileTooLarge as exc:
        raise InvalidLock(f"spec.configuration.prebuilt.lockFile: {exc.message}") from None
    except FileMissing as exc:
        raise InvalidLock(
            f"{exc.fact}; spec.configuration.prebuilt.lockFile must name the lock `pullnix "
            "publish` wrote, committed as a regular file in the commit being deployed"
        ) from None


def _require_trust_roots(machine: MachineConfig, sha: str) -> None:
    """Both of agent.toml's lists, or nothing is fetched: with one empty, Nix would fall
    back to nix.conf's (cache.nixos.org and its key by default)."""
    for name, values in (
        ("substituters", machine.nix.substituters),
        ("trusted_public_keys", machine.nix.trusted_public_keys),
    ):
        if not values:
            raise UntrustedSignature(
                f"[nix] {name} in agent.toml is empty, and {sha[:12]} deploys a prebuilt "
                "system: it is fetched only from the caches agent.toml names, checked only "
                "against the keys it names. Set both (services.pullnix.binaryCache), then "
                "`pullnix retry`; nothing was fetched or activated"
            )
