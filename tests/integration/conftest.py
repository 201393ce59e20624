"""Fixtures the integration tests share.

`machine`: the agent's fake machine (tests/support/agentmachine.py) after one
`reconcile --once` converged it on the fleet's first commit, untraced (no
OTEL_* of the test run reaches that pass); a module whose tests need another
machine (one not yet converged, the helper tests' systems) defines its own
`machine`, which pytest prefers. `helper`: a real `pullnix-helper` process on
the module's fake machine (each helper test module defines `machine`, the
systems it needs), reset before and its socket directory removed after.
`sandbox`: an empty fake-NixOS sandbox for the Nix driver's tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.agentmachine import Machine, agent_env, fake_machine
from tests.support.helperproc import (
    FakeMachine,
    HelperProcess,
    cleanup_socket_dir,
    start_helper,
    write_helper_config,
)
from tests.support.nixfixture import Sandbox, make_sandbox


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    with fake_machine(tmp_path) as converged:
        assert converged.reconcile(agent_env()).returncode == 0
        yield converged


@pytest.fixture
def helper(machine: FakeMachine, tmp_path: Path) -> Iterator[HelperProcess]:
    machine.reset()
    proc = start_helper(write_helper_config(tmp_path, machine.sandbox))
    yield proc
    proc.stop()
    cleanup_socket_dir(proc.paths)


@pytest.fixture
def sandbox(tmp_path: Path) -> Sandbox:
    return make_sandbox(tmp_path)
