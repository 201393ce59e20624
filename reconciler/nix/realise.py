"""Fetch a prebuilt system from the machine's binary caches, checked against its trusted keys.

Owns `nix-store --realise STORE_PATH` with the machine's `[nix] substituters`
and `trusted_public_keys` (agent.toml) passed as options and
`require-sigs = true`, so Nix refuses any path of the closure that is not
signed by one of those keys; the result is held by a GC root in the same
directory as builds, and must be a NixOS system (NotASystem otherwise).
Nix's refusals become typed errors: an unsigned or wrongly signed path is
UntrustedSignature (terminal: a new key or a new lock is needed), a cache that
does not answer is CacheUnavailable and a path no cache has is NotInCache
(both transient: they back off and retry).

Must not: evaluate or build anything (there is no derivation to build: the
store path is all the machine knows), or read the lock file.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from reconciler.core.errors import CommitFailure, TerminalError, TransientError
from reconciler.nix.build import BuildSettings, BuiltSystem, gc_root, require_system
from reconciler.nix.errors import NixCommandFailed, NotASystem, first_error, with_tail
from reconciler.nix.process import LineCallback, run_nix


class UntrustedSignature(CommitFailure):
    reason = "UntrustedSignature"
    failure = "UntrustedSignature"


class CacheUnavailable(TransientError):
    reason = "CacheUnavailable"


class NotInCache(TransientError):
    reason = "NotInCache"


_UNSIGNED = re.compile(r"is not signed by any of the keys")
_DOWN = re.compile(
    r"unable to download|Couldn't connect|Could not resolve host|does not appear to be a "
    r"binary cache|Connection refused|Timeout was reached|HTTP error 5\d\d"
)
_MISSING = re.compile(r"don't know how to build|there is no substituter")
_UNOPENABLE = re.compile(r"don't know how to open Nix store '([^']*)'")


def realise_argv(
    store_path: str, root: str, substituters: Sequence[str], trusted_keys: Sequence[str]
) -> list[str]:
    """The command: realise `store_path` from `substituters` only, signatures required."""
    argv = ["nix-store", "--realise", store_path, "--add-root", root]
    argv += ["--option", "require-sigs", "true"]
    if substituters:
        argv += ["--option", "substituters", " ".join(substituters)]
    if trusted_keys:
        argv += ["--option", "trusted-public-keys", " ".join(trusted_keys)]
    return argv


def realise_system(
    store_path: str,
    *,
    host: str,
    revision: str,
    substituters: Sequence[str],
    trusted_keys: Sequence[str],
    settings: BuildSettings,
    on_line: LineCallback | None = None,
) -> BuiltSystem:
    """`store_path` present in the local store (fetched if it is not), held by a GC root."""
    root = gc_root(settings, host, revision)
    argv = realise_argv(store_path, str(root), substituters, trusted_keys)
    run = run_nix(
        [*argv, *settings.extra_args], timeout=settings.timeout, on_line=on_line, env=settings.env()
    )
    if not run.ok:
        raise realise_error(store_path, substituters, trusted_keys, run.tail)
    what = f"the prebuilt lock entry of {host}"
    try:
        return require_system(BuiltSystem(store_path, root, what, revision, run.seconds))
    except NotASystem:  # its hint is about spec.configuration; nothing was built here
        raise NotASystem(
            f"{store_path} (built from {what}) is not a NixOS system: it has no executable "
            "bin/switch-to-configuration; the lock must name each host's toplevel as "
            "`pullnix publish` writes it (--attr names the host's NixOS configuration)"
        ) from None


def realise_error(
    store_path: str, substituters: Sequence[str], keys: Sequence[str], tail: Sequence[str]
) -> TerminalError | TransientError:
    """What Nix's last lines (`tail`) say went wrong fetching `store_path`, as a typed error."""
    caches = ", ".join(substituters) or "the substituters of nix.conf"
    if any(_UNSIGNED.search(line) for line in tail):
        names = ", ".join(k.partition(":")[0] for k in keys) or "none configured"
        return UntrustedSignature(
            with_tail(
                f"{store_path} from {caches} is not signed by a key this machine trusts "
                f"([nix] trusted_public_keys: {names}); nothing was activated. Sign it in CI "
                "(pullnix publish --sign-key) with a key whose public half is in agent.toml",
                tail,
            )
        )
    unopenable = next((m for line in tail if (m := _UNOPENABLE.search(line))), None)
    if unopenable is not None:
        return CacheUnavailable(
            f"Nix cannot open the substituter {unopenable[1]!r} ([nix] substituters in "
            f"agent.toml) to fetch {store_path}; write a store URL Nix knows, such as "
            "https://cache.example.org. Retrying with backoff"
        )
    if any(_DOWN.search(line) for line in tail):
        return CacheUnavailable(
            f"the binary cache {caches} did not answer for {store_path}: {first_error(tail)}; "
            "retrying with backoff"
        )
    if any(_MISSING.search(line) for line in tail):
        return NotInCache(
            f"no binary cache has {store_path} ({caches}); has CI copied it (pullnix publish "
            "--to)? retrying with backoff"
        )
    return NixCommandFailed(with_tail(f"fetching {store_path} failed: {first_error(tail)}", tail))
