"""The status.json the agent really writes fits the status schema of the CRD.

A real deploy, a real automatic rollback (a health check fails) and a real
rollback asked for with `pullnix rollback`, each through `pullnix reconcile
--once` with real git, real Nix and the real helper; after each pass the
"status" part of `pullnix status --json` is validated against the CRD's
status schema (unknown fields refused, nulls only where the schema says
nullable, times RFC 3339). Whoever changes the writer or the CRD alone
breaks this test, so the two cannot drift apart again.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.api import format_path, status_validator
from tests.support.agentmachine import Machine, fake_machine
from tests.support.nixfixture import commit_fleet

pytestmark = pytest.mark.nix


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as machine:
        yield machine


def fitting_status(machine: Machine) -> dict[str, Any]:
    """The status the agent wrote, after checking it against the CRD's schema."""
    status: dict[str, Any] = machine.status()["status"]
    errors = status_validator().iter_errors(status)
    problems = [format_path(("status", *e.absolute_path)) + ": " + e.message for e in errors]
    assert problems == [], status
    return status


def test_the_status_of_deploys_and_rollbacks_fits_the_crd(machine: Machine) -> None:
    first = machine.reconcile()
    assert first.returncode == 0, first.stderr
    fitting_status(machine)

    good = commit_fleet(machine.repo, version="2")
    done = machine.reconcile()
    assert done.returncode == 0, done.stderr
    status = fitting_status(machine)
    deployed = status["history"][0]
    assert (deployed["kind"], deployed["result"], deployed["revision"]) == (
        "apply",
        "Succeeded",
        good,
    )
    assert [c["ok"] for c in deployed["healthChecks"]] == [True]
    assert status["source"]["revision"] == good
    assert status["source"]["url"] == f"file://{machine.repo.bare}"

    bad = commit_fleet(machine.repo, version="3", health="broken")
    done = machine.reconcile()
    assert done.returncode == 3, done.stderr
    status = fitting_status(machine)
    rolled_back = status["history"][0]
    assert (rolled_back["result"], rolled_back["revision"]) == ("RolledBack", bad)
    assert [c["ok"] for c in rolled_back["healthChecks"]] == [False]
    assert status["lastAttemptedRevision"] == bad
    assert status["lastAppliedRevision"] == good

    asked = machine.cli("rollback")  # no agent runs: straight to the helper
    assert asked.returncode == 0, asked.stderr
    machine.reconcile()  # folds the finished rollback into the record and the history
    status = fitting_status(machine)
    requested = status["history"][0]
    assert (requested["kind"], requested["result"]) == ("rollback", "Succeeded")
    assert [h["result"] for h in status["history"][:3]] == ["Succeeded", "RolledBack", "Succeeded"]
