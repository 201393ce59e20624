"""The crash soak in CI: agent and helper SIGKILLed at seeded random moments (support/soak.py).

About a minute of deploys, rollbacks and fetches with kills in between; then the
machine must converge on a last commit with its invariants intact. Set
PULLNIX_SOAK_SECONDS and PULLNIX_SOAK_SEED to run it longer or replay a seed
(`python -m bench --sections soak` runs it for ten minutes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.agentmachine import fake_machine
from tests.support.soak import run_soak

pytestmark = [pytest.mark.nix, pytest.mark.slow]

SECONDS = float(os.environ.get("PULLNIX_SOAK_SECONDS", "60"))
SEED = int(os.environ.get("PULLNIX_SOAK_SEED", "15"))


def test_random_kills_leave_a_consistent_machine_that_converges(tmp_path: Path) -> None:
    with fake_machine(tmp_path, interval="2s") as machine:
        try:
            report = run_soak(machine, SEED, SECONDS)
        finally:
            machine.stop_agents()
            machine.helper.stop()  # the last one the soak started
    print(f"\n{report}")
