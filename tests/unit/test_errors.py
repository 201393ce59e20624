"""Every error pullnix reports is transient or terminal by its type, and the failures that
stick to a commit say by their type which failure they are remembered as."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import reconciler
from reconciler.controller.gates import GateRefused
from reconciler.core.errors import CommitFailure, PullnixError, TerminalError, TransientError
from reconciler.nix import errors as nix_errors


def all_subclasses(cls: type) -> set[type]:
    out = set()
    for sub in cls.__subclasses__():
        out |= {sub, *all_subclasses(sub)}
    return out


def pullnix_errors() -> set[type]:
    for module in pkgutil.walk_packages(reconciler.__path__, "reconciler."):
        if ".demo.fakenixos" not in module.name:
            importlib.import_module(module.name)
    return all_subclasses(PullnixError)


def test_every_error_is_transient_or_terminal() -> None:
    errors = pullnix_errors()
    assert len(errors) > 15  # the walk found the shells' errors, not only the base's
    neither = [e.__name__ for e in errors if not issubclass(e, TransientError | TerminalError)]
    assert neither == []
    both = [
        e.__name__ for e in errors if issubclass(e, TransientError) and issubclass(e, TerminalError)
    ]
    assert both == []


def test_an_error_of_neither_kind_cannot_be_raised() -> None:
    with pytest.raises(TypeError, match="neither transient nor terminal"):
        PullnixError("what kind?")


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        (nix_errors.BuildFailed("x"), "BuildFailed"),
        (nix_errors.EvaluationError("x"), "BuildFailed"),
        (nix_errors.FlakeAttributeMissing("x"), "BuildFailed"),
        (nix_errors.NotASystem("x"), "BuildFailed"),
        (GateRefused("x"), "GateRefused"),
    ],
)
def test_failures_of_a_commit_carry_the_reason_they_are_remembered_by(
    error: CommitFailure, failure: str
) -> None:
    assert isinstance(error, CommitFailure)
    assert error.failure == failure


@pytest.mark.parametrize(
    "error",
    [
        nix_errors.NixMissing("x"),
        nix_errors.NixpkgsMissing("x"),
        nix_errors.ConfigurationMissing("x"),
        nix_errors.NixStoreBusy("x"),
        nix_errors.NixTimeout("x"),
    ],
)
def test_failures_of_the_machine_do_not_stick_to_a_commit(error: PullnixError) -> None:
    assert not isinstance(error, CommitFailure)
