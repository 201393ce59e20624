"""Benchmark: the Nix driver's overhead around `nix build`, against `nix build` run by hand.

Measures, on the real-Nix fixture, the time from "build requested" to "store
path known" through `reconciler.nix.build.build_flake` (log streaming, GC
root, the switch-to-configuration check) and through a plain
`subprocess.run(["nix", "build", "--no-link", "--json", ...])` in the same
run, alternating the two so drift hits both alike. Two cases: warm (the
toplevel is already built: evaluation and bookkeeping only, where overhead
shows most) and cold (a fresh toplevel each run). Target: within 5% or 50 ms
of the reference. Run it as `python -m bench.bench_nix [N]`; `rows()` is the
entry point for the combined benchmark runner. Not a test.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from reconciler.nix.build import BuildSettings, build_flake, flake_installable, release
from reconciler.nix.process import FEATURES
from tests.support.nixfixture import (
    OFFLINE_NIX_CONFIG,
    FleetRepo,
    commit_fleet,
    init_fleet_repo,
    make_sandbox,
)

TEMPLATE = "nixosConfigurations.{host}"
HOST = "edge-01"
TARGET = "within 5% or 50 ms"


def rows(runs: int = 15) -> list[dict[str, Any]]:
    """Both cases, each the median of `runs` alternating pairs."""
    os.environ.setdefault("NIX_CONFIG", OFFLINE_NIX_CONFIG)
    with tempfile.TemporaryDirectory(prefix="bench-nix-") as tmp:
        root = Path(tmp)
        sandbox = make_sandbox(root)
        fleet = init_fleet_repo(root, sandbox, hosts=(HOST,))
        settings = BuildSettings(gcroots_dir=sandbox.gcroots, timeout=300)

        def driver(sha: str) -> float:
            started = time.perf_counter()
            built = build_flake(fleet.bare, "main", sha, TEMPLATE, HOST, settings)
            elapsed = time.perf_counter() - started
            release(built)
            return elapsed

        def by_hand(sha: str) -> float:
            started = time.perf_counter()
            result = subprocess.run(
                [
                    "nix",
                    *FEATURES,
                    "build",
                    "--no-link",
                    "--json",
                    flake_installable(fleet.bare, "main", sha, TEMPLATE, HOST),
                ],
                capture_output=True,
                text=True,
                check=True,
            )
            json.loads(result.stdout)[0]["outputs"]["out"]
            return time.perf_counter() - started

        warm_sha = fleet.sha
        by_hand(warm_sha)  # build once, so both sides only evaluate
        warm = _pairs(runs, lambda _: warm_sha, driver, by_hand)
        cold = _pairs(runs, lambda i: _fresh(fleet, i), driver, by_hand)
    return [
        _row(f"nix build of an already-built toplevel (ms, median of {runs})", *warm),
        _row(f"nix build of a fresh toplevel (ms, median of {runs})", *cold),
    ]


def _fresh(fleet: FleetRepo, i: int) -> str:
    return commit_fleet(fleet, version=f"bench-{i}-{time.time_ns()}")


def _pairs(
    runs: int,
    sha_for: Callable[[int], str],
    driver: Callable[[str], float],
    by_hand: Callable[[str], float],
) -> tuple[list[float], list[float]]:
    ours: list[float] = []
    reference: list[float] = []
    for i in range(runs):
        first, second = (driver, by_hand) if i % 2 == 0 else (by_hand, driver)
        a, b = first(sha_for(2 * i)), second(sha_for(2 * i + 1))
        ours.append(a if first is driver else b)
        reference.append(b if first is driver else a)
    return ours, reference


def _row(metric: str, ours: list[float], reference: list[float]) -> dict[str, Any]:
    mine, theirs = statistics.median(ours) * 1000, statistics.median(reference) * 1000
    return {
        "metric": metric,
        "pullnix": round(mine, 1),
        "reference": round(theirs, 1),
        "ratio": round(mine / theirs, 3),
        "target": TARGET,
    }


def met(row: dict[str, Any]) -> bool:
    """Whether a row meets the target: at most 5% or 50 ms slower than the reference."""
    return bool(row["pullnix"] - row["reference"] <= max(0.05 * row["reference"], 50.0))


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = sys.argv[1:] if argv is None else argv
    result = rows(int(args[0]) if args else 15)
    print(f"{'metric':<58} {'pullnix':>9} {'reference':>9} {'ratio':>6}  target")
    for row in result:
        print(
            f"{row['metric']:<58} {row['pullnix']:>9} {row['reference']:>9} "
            f"{row['ratio']:>6}  {row['target']} ({'met' if met(row) else 'NOT met'})"
        )
    return result


if __name__ == "__main__":
    main()
