"""Suite-wide settings: real Nix offline, as the tests on this machine need it."""

from __future__ import annotations

import os

# Debian's nix-bin as root with a local store: no sandbox (no build users needed),
# no substituters (no network), flakes on.
os.environ["NIX_CONFIG"] = (
    "sandbox = false\nsubstituters =\nexperimental-features = nix-command flakes\n"
    "warn-dirty = false\n"
)
