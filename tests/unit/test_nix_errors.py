"""Nix's error output is classified into the driver's typed errors; messages stay short."""

from __future__ import annotations

import pytest

from reconciler.nix.errors import (
    BuildFailed,
    EvaluationError,
    FlakeAttributeMissing,
    NixpkgsMissing,
    NixStoreBusy,
    RevisionNotInMirror,
    classify,
    first_error,
    with_tail,
)


@pytest.mark.parametrize(
    ("lines", "kind"),
    [
        (
            ["error: flake 'git+file:///m' does not provide attribute 'packages.x.y'"],
            FlakeAttributeMissing,
        ),
        (
            ["error: file 'nixpkgs/nixos' was not found in the Nix search path (add it ...)"],
            NixpkgsMissing,
        ),
        (
            ["error: Cannot find Git revision 'abc' in ref 'main' of repository 'file:///m'!"],
            RevisionNotInMirror,
        ),
        (["error: SQLite database '/nix/var/nix/db/db.sqlite' is busy"], NixStoreBusy),
        (
            [
                "building '/nix/store/x.drv'...",
                "x> boom",
                "error: builder for '/nix/store/x.drv' failed with exit code 1",
            ],
            BuildFailed,
        ),
        (["error: 1 dependencies of derivation '/nix/store/y.drv' failed to build"], BuildFailed),
        (
            ["error: undefined variable 'foo'", "", "       at /nix/store/s/flake.nix:3:5:"],
            EvaluationError,
        ),
        ([], EvaluationError),
    ],
)
def test_classify(lines: list[str], kind: type[Exception]) -> None:
    assert classify(lines) is kind


def test_first_error_is_nix_s_summary_line() -> None:
    assert first_error(["building", "error: it broke", "error: again"]) == "it broke"
    assert first_error(["only noise "]) == "only noise"
    assert first_error([]) == "no output"


@pytest.mark.parametrize("hint", ["", "full log: nix log /nix/store/x.drv"])
def test_with_tail_fits_in_50_lines_and_ends_with_the_last_line(hint: str) -> None:
    lines = [f"line {i}" for i in range(200)]
    message = with_tail("building x failed", lines, hint)
    assert len(message.splitlines()) == 50
    assert message.splitlines()[0] == "building x failed"
    assert message.endswith("line 199")
    assert with_tail("summary", []) == "summary"
