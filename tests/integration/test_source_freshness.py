"""[source] max_age: an old followed commit is reported SourceStale with its age, in the status
document and in `pullnix status`; a fresh heartbeat commit clears it."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.test_agent_telemetry import Scrape
from tests.support.agentmachine import Machine, fake_machine, wait_for
from tests.support.gitserve import free_port
from tests.support.prebuilt import configure_nix

pytestmark = pytest.mark.nix


def empty_commit(machine: Machine, message: str, date: str | None = None) -> str:
    """An empty commit on the branch (as CI's heartbeat), committed at `date` if given."""
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "ci",
        "GIT_AUTHOR_EMAIL": "ci@example.org",
        "GIT_COMMITTER_NAME": "ci",
        "GIT_COMMITTER_EMAIL": "ci@example.org",
    }
    if date is not None:
        env |= {"GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    tree = machine.repo.worktree

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "commit.gpgsign=false", *args],
            cwd=tree,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout.strip()

    git("commit", "--quiet", "--allow-empty", "-m", message)
    git("push", "--quiet", "origin", "HEAD:refs/heads/main")
    return git("rev-parse", "HEAD")


def conditions(machine: Machine) -> dict[str, dict[str, str]]:
    return {c["type"]: c for c in machine.status()["status"]["conditions"]}


def test_an_old_commit_is_source_stale_and_a_heartbeat_clears_it(tmp_path: Path):
    with fake_machine(tmp_path) as machine:
        configure_nix(machine, [], [], max_age="7d")
        old = empty_commit(machine, "frozen", date="2020-01-01T00:00:00Z")
        assert machine.reconcile().returncode == 0
        stale = conditions(machine)["SourceStale"]
        assert (stale["status"], stale["reason"]) == ("True", "SourceStale")
        assert f"the followed commit {old[:12]} is " in stale["message"]
        assert "h old, older than [source] max_age (7d)" in stale["message"]
        assert conditions(machine)["Ready"]["status"] == "True"  # reported, not acted on
        shown = machine.cli("status")
        assert shown.returncode == 0
        line = next(x for x in shown.stdout.splitlines() if x.startswith("SourceStale"))
        assert "True" in line
        assert "older than [source] max_age (7d)" in line

        # A remote that cannot be reached does not hide it: the last tip is still that old.
        configure_nix(machine, [], [], max_age="7d", urls=[f"file://{tmp_path}/gone.git"])
        assert machine.reconcile().returncode == 1
        assert conditions(machine)["SourceStale"]["status"] == "True"

        configure_nix(machine, [], [], max_age="7d")
        empty_commit(machine, "heartbeat")
        assert machine.reconcile().returncode == 0
        assert "SourceStale" not in conditions(machine)


def test_without_max_age_an_old_commit_is_not_stale(tmp_path: Path):
    with fake_machine(tmp_path) as machine:
        empty_commit(machine, "old", date="2020-01-01T00:00:00Z")
        assert machine.reconcile().returncode == 0
        assert "SourceStale" not in conditions(machine)


def test_the_agent_exports_the_commit_time_and_staleness(tmp_path: Path):
    port = free_port()
    with fake_machine(tmp_path) as machine:
        configure_nix(machine, [], [], max_age="7d", metrics_listen=f"127.0.0.1:{port}")
        empty_commit(machine, "frozen", date="2020-01-01T00:00:00Z")
        machine.start_agent()
        wait_for(
            lambda: Scrape(port).value("pullnix_source_stale") == 1, 120, "pullnix_source_stale 1"
        )
        assert Scrape(port).value("pullnix_source_commit_timestamp_seconds") == 1577836800
