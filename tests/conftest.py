"""Suite-wide settings: real Nix offline, as the tests on this machine need it."""

from __future__ import annotations

import os

from tests.support.nixfixture import OFFLINE_NIX_CONFIG

os.environ["NIX_CONFIG"] = OFFLINE_NIX_CONFIG
