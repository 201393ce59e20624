"""`pullnix reconcile --once` end to end: real git, real Nix (the fixture), the real helper process.

Each test drives a fleet repository through commits and asserts what a user
sees: the exit code, the status conditions, the history, and what ran on the
(fixture) machine.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.helperproc import (
    HelperPaths,
    HelperProcess,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    make_sandbox,
    read_calls,
)

pytestmark = pytest.mark.nix
PULLNIX = Path(sys.executable).with_name("pullnix")


def spec_yaml(sandbox: Sandbox, *, gates: str = "", hook: str = "") -> str:
    return f"""\
apiVersion: pullnix.dev/v1alpha1
kind: NixOSDeployment
metadata:
  name: fleet
spec:
  configuration:
    flake: "nixosConfigurations.{{host}}"
  healthChecks:
    - name: health-file
      command: {{argv: ["/bin/grep", "-qx", "ok", "{sandbox.health_dir}/status"]}}
      timeout: 5s
      retries: 0
      interval: 100ms
  rollback:
    confirmTimeout: 60s
{gates}{hook}"""


@dataclass
class Machine:
    tmp: Path
    sandbox: Sandbox
    repo: FleetRepo
    paths: HelperPaths
    helper: HelperProcess

    def reconcile(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PULLNIX), "--config", str(self.paths.config), "reconcile",
                               "--once", "--timeout", "120"],
                              capture_output=True, text=True, timeout=180, check=False)

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(PULLNIX), "--config", str(self.paths.config), *args],
                              capture_output=True, text=True, timeout=60, check=False)

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.cli("status", "--json").stdout)
        return doc

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["status"]["conditions"] if c["type"] == type_)

    def current(self) -> str:
        return str(self.sandbox.current_system.resolve())


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    sandbox = make_sandbox(tmp_path)
    repo = init_fleet_repo(tmp_path, sandbox, version="1",
                           files={"pullnix.yaml": spec_yaml(sandbox)})
    install_system(sandbox, build_toplevel(repo.flake_ref(), "edge-01"))
    paths = write_helper_config(tmp_path, sandbox, urls=[f"file://{repo.bare}"])
    helper = start_helper(paths)
    try:
        yield Machine(tmp_path, sandbox, repo, paths, helper)
    finally:
        helper.stop()
        cleanup_socket_dir(paths)


def built(machine: Machine, sha: str) -> str:
    return build_toplevel(machine.repo.flake_ref(sha), "edge-01")


def test_a_new_commit_converges_and_a_second_pass_does_nothing(machine: Machine) -> None:
    first = machine.reconcile()
    assert first.returncode == 0, first.stderr
    sha = commit_fleet(machine.repo, version="2")
    done = machine.reconcile()
    assert done.returncode == 0, done.stderr
    assert machine.current() == built(machine, sha)
    status = machine.status()["status"]
    assert status["lastAppliedRevision"] == sha
    assert machine.condition("Ready")["status"] == "True"
    assert machine.condition("Healthy")["status"] == "True"
    assert status["history"][0]["result"] == "Succeeded"
    assert status["history"][0]["revision"] == sha
    assert len(status["history"][0]["traceId"]) == 32
    calls = len(read_calls(machine.sandbox))

    again = machine.reconcile()
    assert again.returncode == 0, again.stderr
    assert len(read_calls(machine.sandbox)) == calls  # nothing was activated


def test_a_failing_health_check_rolls_back_and_is_not_retried(machine: Machine) -> None:
    good = commit_fleet(machine.repo, version="2")
    assert machine.reconcile().returncode == 0
    good_system = machine.current()

    bad = commit_fleet(machine.repo, version="3", health="broken")
    done = machine.reconcile()
    assert done.returncode == 3, done.stderr
    assert machine.current() == good_system
    ready = machine.condition("Ready")
    assert (ready["status"], ready["reason"]) == ("False", "RolledBack")
    assert bad[:12] in ready["message"]
    assert machine.condition("Healthy")["status"] == "False"
    history = machine.status()["status"]["history"]
    assert history[0]["result"] == "RolledBack"
    assert history[0]["healthChecks"][0]["ok"] is False
    assert machine.status()["status"]["lastAppliedRevision"] == good

    calls = len(read_calls(machine.sandbox))
    assert machine.reconcile().returncode == 3
    assert len(read_calls(machine.sandbox)) == calls  # the rolled-back commit is not retried

    fixed = commit_fleet(machine.repo, version="4", health="ok")
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, fixed)


def test_a_build_failure_stalls_until_the_next_commit(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    commit_fleet(machine.repo, version="2", fail_build=True)
    done = machine.reconcile()
    assert done.returncode == 3
    stalled = machine.condition("Stalled")
    assert (stalled["status"], stalled["reason"]) == ("True", "BuildFailed")
    assert "build failed on purpose" in stalled["message"]
    assert machine.current() == before

    fixed = commit_fleet(machine.repo, version="3", fail_build=False)
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, fixed)
    assert all(c["type"] != "Stalled" for c in machine.status()["status"]["conditions"])


def test_a_gate_that_refuses_stops_the_deploy(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    gate = ("  gates:\n    - name: policy\n      command: {argv: [\"ci/check\"]}\n")
    check = "#!/bin/sh\necho \"refusing $PULLNIX_NEW_SYSTEM\"\nexit 1\n"
    script = machine.repo.worktree / "ci" / "check"
    script.parent.mkdir()
    script.write_text(check)
    script.chmod(0o755)  # git records the mode the file has in the work tree
    commit_fleet(machine.repo, version="2",
                 files={"pullnix.yaml": spec_yaml(machine.sandbox, gates=gate), "ci/check": check})
    done = machine.reconcile()
    assert done.returncode == 3
    stalled = machine.condition("Stalled")
    assert stalled["reason"] == "GateRefused"
    assert "refusing /nix/store/" in stalled["message"]
    assert machine.current() == before


def test_suspend_stops_deploys_and_resume_lets_them_through(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    before = machine.current()
    assert machine.cli("suspend").returncode == 0
    sha = commit_fleet(machine.repo, version="2")
    machine.reconcile()
    assert machine.current() == before
    assert machine.condition("Ready")["reason"] == "Suspended"
    assert machine.cli("resume").returncode == 0
    assert machine.reconcile().returncode == 0
    assert machine.current() == built(machine, sha)


def test_status_and_history_print_tables(machine: Machine) -> None:
    assert machine.reconcile().returncode == 0
    status = machine.cli("status")
    assert status.returncode == 0
    assert "Ready" in status.stdout
    assert "Succeeded" in status.stdout
    history = machine.cli("history")
    assert history.returncode == 0
    assert "TRACE ID" in history.stdout
    assert machine.status()["status"]["history"][0]["traceId"] in history.stdout
