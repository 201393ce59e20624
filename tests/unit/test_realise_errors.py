"""Fetching a prebuilt system: Nix 2.8's refusals become typed errors (lines as Nix prints them)."""

from __future__ import annotations

import pytest

from reconciler.core.errors import TerminalError, TransientError
from reconciler.nix.realise import realise_argv, realise_error

PATH = "/nix/store/" + "r" * 32 + "-nixos-system-edge-01-2"
CACHE = "http://127.0.0.1:8080/fleet"
KEY = "ci.example.org-1:9EDzsCrSd5vm0WQ+feS9wnn75DoUcH8hplgoaZz0/ks="


@pytest.mark.parametrize(
    ("lines", "reason", "kind", "says"),
    [
        (
            [
                "this path will be fetched (0.00 MiB download, 0.00 MiB unpacked):",
                f"warning: the substitute for '{PATH}' from '{CACHE}' is not signed by any of "
                "the keys in 'trusted-public-keys'",
                f"error: build of '{PATH}' failed",
            ],
            "UntrustedSignature",
            TerminalError,
            f"{PATH} from {CACHE} is not signed by a key this machine trusts ([nix] "
            "trusted_public_keys: ci.example.org-1); nothing was activated",
        ),
        (
            [
                f"warning: error: unable to download '{CACHE}/nix-cache-info': Couldn't "
                "connect to server (7); retrying in 317 ms",
                "don't know how to build these paths:",
                f"error: build of '{PATH}' failed",
            ],
            "CacheUnavailable",
            TransientError,
            f"the binary cache {CACHE} did not answer for {PATH}",
        ),
        (
            [f"warning: '{CACHE}' does not appear to be a binary cache", "don't know how"],
            "CacheUnavailable",
            TransientError,
            "retrying with backoff",
        ),
        (
            [
                "don't know how to build these paths:",
                f"  {PATH}",
                f"error: build of '{PATH}' failed",
            ],
            "NotInCache",
            TransientError,
            f"no binary cache has {PATH} ({CACHE}); has CI copied it",
        ),
        (
            # Nix 2.8 only warns about a store URL it cannot open, then finds no substitute:
            # the fault is agent.toml's, not CI's, and the message must say so.
            [
                "warning: don't know how to open Nix store 'ftp://cache.example.org'",
                "don't know how to build these paths:",
                f"  {PATH}",
                f"error: build of '{PATH}' failed",
            ],
            "CacheUnavailable",
            TransientError,
            "Nix cannot open the substituter 'ftp://cache.example.org' ([nix] substituters in "
            "agent.toml)",
        ),
        (
            ["error: opening file '/nix/var/nix/db/big-lock': Permission denied"],
            "NixCommandFailed",
            TerminalError,
            f"fetching {PATH} failed: opening file",
        ),
    ],
)
def test_nix_refusals_become_typed_errors(
    lines: list[str], reason: str, kind: type[Exception], says: str
):
    error = realise_error(PATH, [CACHE], [KEY], lines)
    assert error.reason == reason
    assert isinstance(error, kind)
    assert says in error.message


def test_realise_requires_signatures_and_names_only_the_machines_caches_and_keys():
    argv = realise_argv(
        PATH, "/var/lib/pullnix/gcroots/system-edge-01-abc", [CACHE, "s3://b"], [KEY]
    )
    assert argv[:5] == ["nix-store", "--realise", PATH, "--add-root", argv[4]]
    options = dict(zip(argv[6::3], argv[7::3], strict=True))
    assert options == {
        "require-sigs": "true",
        "substituters": f"{CACHE} s3://b",
        "trusted-public-keys": KEY,
    }
    assert "substituters" not in realise_argv(PATH, "/r", [], [])  # nix.conf's then
