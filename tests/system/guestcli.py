"""What a user sees of pullnix inside the system tier's container, and waiting for it.

Owns running pullnix's own commands in the container (`pullnix status --json`,
`pullnix history --json`, `pullnix reconcile --now`) and reading what they print,
the units' restart counters, and polling until a condition on those holds.

Must not: change the machine (beyond asking the agent for a pass).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from tests.system.container import Container
from tests.system.install import AGENT_UNIT, CONFIG_PATH, PULLNIX

T = TypeVar("T")


def status(box: Container) -> dict[str, Any]:
    """`pullnix status --json` (exit 0 Ready, 3 not Ready: both answer); {} before any pass."""
    done = box.run([PULLNIX, "--config", CONFIG_PATH, "status", "--json"], check=False)
    if done.returncode not in (0, 3) or not done.stdout.strip():
        return {}
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def condition(doc: dict[str, Any], kind: str) -> dict[str, Any]:
    for found in doc.get("status", {}).get("conditions", []):
        if found["type"] == kind:
            return dict(found)
    return {}


def history(box: Container) -> list[dict[str, Any]]:
    """`pullnix history --json`, newest first."""
    entries: list[dict[str, Any]] = json.loads(
        box.run([PULLNIX, "--config", CONFIG_PATH, "history", "--json"]).stdout
    )
    return entries


def reconcile_now(box: Container) -> None:
    """`pullnix reconcile --now`: ask the running agent for a pass (the push trigger)."""
    box.run([PULLNIX, "--config", CONFIG_PATH, "reconcile", "--now"])


def ready_at(box: Container, revision: str, timeout: float = 120.0) -> dict[str, Any]:
    """The status once Ready is True with `revision` as lastAppliedRevision."""
    return wait_for(
        lambda: _ready_at(status(box), revision), timeout, f"Ready at {revision[:12]}", box
    )


def _ready_at(doc: dict[str, Any], revision: str) -> dict[str, Any] | None:
    ready = condition(doc, "Ready")
    if ready.get("status") == "True" and doc["status"].get("lastAppliedRevision") == revision:
        return doc
    return None


def finished_entry(box: Container, revision: str, timeout: float = 120.0) -> dict[str, Any]:
    """The history entry of `revision` once the agent has recorded its result."""

    def found() -> dict[str, Any] | None:
        return next((e for e in history(box) if e["revision"] == revision), None)

    return wait_for(found, timeout, f"a history entry for {revision[:12]}", box)


def resolve(box: Container, link: str) -> str:
    return box.run(["readlink", "-f", link]).stdout.strip()


def restarts(box: Container, unit: str) -> tuple[int, int]:
    """`systemctl show -p NRestarts,MainPID`: (NRestarts, MainPID)."""
    return int(box.unit_property(unit, "NRestarts")), int(box.unit_property(unit, "MainPID"))


def wait_for(probe: Callable[[], T | None], timeout: float, what: str, box: Container) -> T:
    """`probe()` once it answers something other than None; AssertionError after `timeout`
    with the agent's status and journal, to say why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        answer = probe()
        if answer is not None:
            return answer
        time.sleep(0.2)
    raise AssertionError(
        f"no {what} after {timeout:.0f}s.\nstatus: "
        f"{json.dumps(status(box).get('status'), indent=1)}\n"
        f"agent journal (tail):\n{box.journal(AGENT_UNIT)[-4000:]}"
    )
