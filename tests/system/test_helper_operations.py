"""The helper under real systemd: it applies a generation whose activation restarts the
agent, outlives that activation, and commits the generation once the new agent confirms;
a generation that breaks the agent is rolled back by the helper alone, also when the
power fails in the middle of its trial."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from reconciler.helper.client import HelperClient
from tests.system.container import Container
from tests.system.install import (
    AGENT_UNIT,
    BOOT_DEFAULT,
    HELPER_UNIT,
    STANDIN_RECORD,
    SYSTEM_PROFILE,
    Installed,
    add_generation,
)

pytestmark = pytest.mark.system

HELPER_SOCKET = "/run/pullnix/helper.sock"
AGENT_CHECK = {"name": "agent", "systemd": {"units": [AGENT_UNIT]}}


def _client(box: Container) -> HelperClient:
    """The helper's own client, from the host, through the container's root."""
    return HelperClient(box.host_path(HELPER_SOCKET), timeout=10)


def _resolve(box: Container, link: str) -> str:
    return box.run(["readlink", "-f", link]).stdout.strip()


def _agent_record(box: Container, timeout: float = 30.0) -> dict[str, Any]:
    """The record of the agent process now running, once it has written it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pid = box.wait_active(AGENT_UNIT, timeout=timeout)
        found = box.run(["cat", STANDIN_RECORD], check=False)
        if found.returncode == 0:
            record: dict[str, Any] = json.loads(found.stdout)
            if record["pid"] == pid:
                return record
        time.sleep(0.1)
    raise AssertionError(f"no record from the running agent:\n{box.journal(AGENT_UNIT)}")


def _wait_state(client: HelperClient, operation: str, state: str,
                timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    current = None
    while time.monotonic() < deadline:
        current = client.status(operation)["found"]["state"]
        if current == state:
            return
        time.sleep(0.05)
    raise AssertionError(f"operation {operation} never reached {state} (last: {current})")


def test_the_helper_outlives_the_activation_it_runs_and_commits_once_the_agent_confirms(
        container: Container, installed: Installed) -> None:
    helper_pid = container.wait_active(HELPER_UNIT)
    old_agent = _agent_record(container)
    second = add_generation(container, 2)

    client = _client(container)
    operation = client.apply(second.system, revision=second.revision, trial=True,
                             health_checks=[AGENT_CHECK], require_confirm=True,
                             confirm_timeout=60)
    done = client.wait(operation, timeout=120)

    assert done["state"] == "Succeeded", done
    for link in ("/run/current-system", SYSTEM_PROFILE, BOOT_DEFAULT):
        assert _resolve(container, link) == second.system, link
    agent = _agent_record(container)
    assert agent["pid"] != old_agent["pid"]
    assert agent["generation"] == "2"
    assert agent["confirmed"]["operationId"] == operation
    assert container.main_pid(HELPER_UNIT) == helper_pid
    assert container.unit_property(HELPER_UNIT, "NRestarts") == "0"


def test_a_generation_that_breaks_the_agent_is_rolled_back(
        container: Container, installed: Installed) -> None:
    first = installed.first
    helper_pid = container.wait_active(HELPER_UNIT)
    broken = add_generation(container, 2, broken_agent=True)

    client = _client(container)
    operation = client.apply(broken.system, revision=broken.revision, trial=True,
                             health_checks=[AGENT_CHECK], require_confirm=True,
                             confirm_timeout=4)
    done = client.wait(operation, timeout=120)

    assert done["state"] == "RolledBack", done
    for link in ("/run/current-system", SYSTEM_PROFILE, BOOT_DEFAULT):
        assert _resolve(container, link) == first.system, link
    agent = _agent_record(container)
    assert agent["generation"] == "1"
    assert agent["storePath"] == first.agent
    assert container.main_pid(HELPER_UNIT) == helper_pid
    assert "breaks the agent on purpose" in container.journal(AGENT_UNIT)


def test_a_power_cut_during_a_trial_boots_the_old_generation_and_the_helper_rolls_back(
        container: Container, installed: Installed) -> None:
    first = installed.first
    container.wait_active(HELPER_UNIT)
    broken = add_generation(container, 2, broken_agent=True)  # never confirms: the trial waits
    client = _client(container)
    operation = client.apply(broken.system, revision=broken.revision, trial=True,
                             require_confirm=True, confirm_timeout=600)
    _wait_state(client, operation, "Verifying")
    assert _resolve(container, "/run/current-system") == broken.system

    container.power_cut()
    container.boot()

    for link in ("/run/booted-system", "/run/current-system", SYSTEM_PROFILE, BOOT_DEFAULT):
        assert _resolve(container, link) == first.system, link
    done = _client(container).wait(operation, timeout=120)
    assert done["state"] == "RolledBack", done
    states = [t["state"] for t in done["transitions"]]
    assert states.index("Verifying") < states.index("RollingBack"), states
    assert _resolve(container, "/run/current-system") == first.system
    agent = _agent_record(container)
    assert agent["generation"] == "1"
