"""The demo's stage: the sandbox's paths and the processes it runs, and how to talk to them.

Owns `Stage` (where everything is, the agent's and the helper's clients), starting
and stopping `pullnix-helper` and `pullnix agent` as processes (their output in
log files under the sandbox), running the `pullnix` command against the stage,
and small waits. Must not: tell any part of the story (`story.py`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.common.client import HelperClient, HelperError, HelperUnavailable
from reconciler.controller.apiclient import AgentClient, AgentUnavailable
from reconciler.demo.fakenixos import Sandbox
from reconciler.demo.fleet import DemoFleet
from reconciler.demo.progress import Progress


class DemoFailed(Exception):
    """The story did not go as told; the message says where."""


@dataclass
class Stage:
    """Everything the demo set up, and the processes it started."""

    root: Path
    sandbox: Sandbox
    fleet: DemoFleet
    config: Path
    sockets: Path
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    passes_shown: set[int] = field(default_factory=set)

    @property
    def agent(self) -> AgentClient:
        return AgentClient(self.sockets / "agent.sock", timeout=30)

    @property
    def helper(self) -> HelperClient:
        return HelperClient(self.sockets / "helper.sock", timeout=10)

    @property
    def hooks_log(self) -> Path:
        return self.root / "post-deploy.log"

    def log(self, name: str) -> Path:
        return self.root / f"{name}.log"


def program(name: str) -> str | None:
    """`name` beside the running program (a venv's or a Nix wrapper's bin/), else on PATH."""
    for directory in (Path(sys.argv[0]).resolve().parent, Path(sys.executable).parent):
        candidate = directory / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which(name)


def start(stage: Stage, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
    found = program(argv[0])
    assert found is not None  # the preflight (preflight.py) checked
    with stage.log(name).open("ab") as log:
        return subprocess.Popen(
            [found, *argv[1:]],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )


def stop(stage: Stage) -> None:
    for name in ("agent", "helper"):
        proc = stage.processes.get(name)
        if proc is None or proc.poll() is not None:
            continue
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def check_alive(stage: Stage) -> None:
    for name, proc in stage.processes.items():
        if proc.poll() is not None:
            raise DemoFailed(f"the {name} exited with status {proc.returncode}")


def cli(stage: Stage, *args: str, check: bool = False) -> str:
    found = program("pullnix")
    assert found is not None
    done = subprocess.run(
        [found, "--config", str(stage.config), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if check and done.returncode != 0:
        raise DemoFailed(f"pullnix {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout or done.stderr


def wait(progress: Progress, what: str, ready: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise DemoFailed(f"timed out after {timeout:.0f}s waiting for {what}")
        progress.waiting(f"waiting for {what}")
        time.sleep(0.05)
    progress.done_waiting()


def answers(ping: Callable[[], object]) -> bool:
    with contextlib.suppress(AgentUnavailable, HelperUnavailable, HelperError, OSError):
        ping()
        return True
    return False


def tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(none)"
