"""Start and stop a real `pullnix-helper` process for tests.

Owns the test side of running the helper: writing a machine config that points
its socket, state dir and profiles into a temporary directory (and its
`[system]` paths at a fixture sandbox), starting `.venv/bin/pullnix-helper
--config FILE` as a subprocess with its stderr in a file, waiting until it
answers, and stopping or killing it. Must not: mock anything; the helper under
test is the real program.

- `write_helper_config(tmp, sandbox, urls=..., agent_uids=...) -> HelperPaths`
  (config, socket in a short /tmp dir, state dir, helper profile, stderr file);
- `start_helper(paths, env=...) -> HelperProcess` (`.client` is a `HelperClient`,
  `.stop()` SIGTERMs, `.kill()` SIGKILLs, `.stderr_text()`), or the context
  manager `running_helper(paths)`; `cleanup_socket_dir(paths)` afterwards;
- `build_machine(tmp, {"old": {knobs}, "new": {...}}) -> FakeMachine`: one
  fixture toplevel per variant for one sandbox, the first installed;
  `FakeMachine.reset()`, `.current()`, `.profile()`, `.boot_default()`;
- `add_to_store(path)`: `nix-store --add`, for hand-made store paths.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.common.client import HelperClient
from tests.support.nixfixture import (
    DEFAULT_KNOBS,
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    make_sandbox,
)

HELPER_BIN = Path(sys.executable).with_name("pullnix-helper")


@dataclass(frozen=True)
class HelperPaths:
    config: Path
    socket: Path
    state_dir: Path
    helper_profile: Path
    stderr: Path


def write_helper_config(
    tmp: Path,
    sandbox: Sandbox | None = None,
    *,
    urls: Sequence[str] = (),
    agent_uids: Sequence[int] = (0,),
    extra_source: Mapping[str, str] | None = None,
) -> HelperPaths:
    """A machine config under `tmp` for a helper acting on `sandbox` (if given).

    The socket lives in a short directory under /tmp (Unix socket paths are limited
    to 107 bytes); it is removed with `tmp`'s helper by `stop()`.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    sockdir = Path(tempfile.mkdtemp(prefix="pnx-", dir="/tmp"))
    paths = HelperPaths(
        config=tmp / "agent.toml",
        socket=sockdir / "helper.sock",
        state_dir=tmp / "helper-state",
        helper_profile=tmp / "hprof" / "helper",
        stderr=tmp / "helper.stderr",
    )
    lines = [
        'host = "edge-01"',
        f'state_dir = "{tmp / "agent-state"}"',
        "",
        "[source]",
        "urls = [" + ", ".join(f'"{u}"' for u in urls) + "]",
    ]
    lines += [f'{k} = "{v}"' for k, v in (extra_source or {}).items()]
    if sandbox is not None:
        lines += [
            "",
            "[system]",
            f'profile = "{sandbox.profile}"',
            f'current_system = "{sandbox.current_system}"',
            f'booted_system = "{sandbox.booted_system}"',
        ]
    lines += [
        "",
        "[helper]",
        f'socket = "{paths.socket}"',
        f'state_dir = "{paths.state_dir}"',
        f'profile = "{paths.helper_profile}"',
        "agent_uids = [" + ", ".join(str(u) for u in agent_uids) + "]",
        "",
    ]
    paths.config.write_text("\n".join(lines))
    return paths


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM, then SIGKILL if `proc` has not gone after `timeout`; its exit status."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


def kill(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL `proc` if it still runs, and reap it."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)


@dataclass
class HelperProcess:
    paths: HelperPaths
    proc: subprocess.Popen[bytes]
    client: HelperClient = field(init=False)

    def __post_init__(self) -> None:
        self.client = HelperClient(self.paths.socket, timeout=10)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr_text(self) -> str:
        try:
            return self.paths.stderr.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def wait_exit(self, timeout: float = 30) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self, timeout: float = 10) -> int | None:
        """SIGTERM, then SIGKILL if it does not go; the exit status."""
        return terminate(self.proc, timeout)

    def kill(self) -> None:
        kill(self.proc)


def start_helper(
    paths: HelperPaths,
    *,
    env: Mapping[str, str] | None = None,
    wait: bool = True,
    timeout: float = 10,
) -> HelperProcess:
    """Start `pullnix-helper --config FILE`; by default wait until it answers ping."""
    with open(paths.stderr, "ab") as stderr:
        proc = subprocess.Popen(
            [str(HELPER_BIN), "--config", str(paths.config)],
            stdin=subprocess.DEVNULL,
            stdout=stderr,
            stderr=stderr,
            env={**os.environ, **(env or {})},
        )
    helper = HelperProcess(paths, proc)
    if wait:
        deadline = time.monotonic() + timeout
        while not paths.socket.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"helper exited {proc.returncode}:\n{helper.stderr_text()}")
            if time.monotonic() > deadline:
                helper.kill()
                raise RuntimeError(
                    f"helper not listening after {timeout}s:\n{helper.stderr_text()}"
                )
            time.sleep(0.005)
        helper.client.wait_until_up(timeout)
    return helper


@contextmanager
def running_helper(
    paths: HelperPaths, *, env: Mapping[str, str] | None = None
) -> Iterator[HelperProcess]:
    """A started helper, stopped (and its socket directory removed) on the way out."""
    helper = start_helper(paths, env=env)
    try:
        yield helper
    finally:
        helper.stop()
        cleanup_socket_dir(paths)


def cleanup_socket_dir(paths: HelperPaths) -> None:
    shutil.rmtree(paths.socket.parent, ignore_errors=True)


@dataclass(frozen=True)
class FakeMachine:
    """A fixture sandbox with toplevels built for it, one per named variant of knobs."""

    sandbox: Sandbox
    repo: FleetRepo
    systems: Mapping[str, str]
    revisions: Mapping[str, str]

    def reset(self, system: str = "old") -> None:
        """Installed and booted into `system`; no switch calls recorded yet."""
        target = self.systems[system]
        if self.profile() == target:  # skip nix-env: tests reset often
            for link in (
                self.sandbox.boot_default,
                self.sandbox.current_system,
                self.sandbox.booted_system,
            ):
                link.unlink(missing_ok=True)
                link.symlink_to(target)
        else:
            install_system(self.sandbox, target)
        self.sandbox.calls.unlink(missing_ok=True)

    def current(self) -> str:
        return os.path.realpath(self.sandbox.current_system)

    def profile(self) -> str:
        return os.path.realpath(self.sandbox.profile)

    def boot_default(self) -> str:
        return os.path.realpath(self.sandbox.boot_default)

    def name_of(self, store_path: str) -> str:
        return next((k for k, v in self.systems.items() if v == store_path), store_path)


def build_machine(tmp: Path, variants: Mapping[str, Mapping[str, object]]) -> FakeMachine:
    """Build one toplevel per variant (fixture knobs over the defaults) for a new sandbox.

    The first variant is installed as the running system.
    """
    sandbox = make_sandbox(tmp)
    names = list(variants)
    repo = init_fleet_repo(tmp / "repo", sandbox, **_knobs(variants[names[0]]))
    systems, revisions = {}, {}
    for i, name in enumerate(names):
        sha = (
            repo.sha
            if i == 0
            else commit_fleet(repo, message=f"variant {name}", **_knobs(variants[name]))
        )
        systems[name] = build_toplevel(repo.flake_ref(sha), "edge-01")
        revisions[name] = sha
    machine = FakeMachine(sandbox, repo, systems, revisions)
    machine.reset(names[0])
    return machine


def _knobs(variant: Mapping[str, object]) -> dict[str, object]:
    return {**DEFAULT_KNOBS, **variant}


def add_to_store(path: Path) -> str:
    """`nix-store --add PATH`: a store path with exactly that content (files or a symlink)."""
    out = subprocess.run(
        ["nix-store", "--add", str(path)], check=True, capture_output=True, text=True, timeout=60
    )
    return out.stdout.strip()
