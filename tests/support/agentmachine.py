"""A fake machine for end-to-end tests of the agent: sandbox, fleet repository, real helper.

Owns the setup every controller test shares: a fixture sandbox with the fleet's
first commit installed and booted, a bare fleet repository as the remote, a
machine config (`agent.toml`) pointing everything into the test's directory,
and a running `pullnix-helper`. `Machine` runs the `pullnix` CLI against it and
reads what a user would read (exit codes, `status --json`); `AgentProcess`
runs `pullnix agent` as a real subprocess with its log in a file.

Must not: mock anything; the agent, the helper, git and Nix are the real ones.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.controller.apiclient import AgentClient, AgentUnavailable
from tests.support.helperproc import (
    HelperPaths,
    HelperProcess,
    cleanup_socket_dir,
    kill,
    start_helper,
    terminate,
    write_helper_config,
)
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    build_toplevel,
    init_fleet_repo,
    install_system,
    make_sandbox,
)

PULLNIX = Path(sys.executable).with_name("pullnix")


def spec_yaml(
    sandbox: Sandbox,
    *,
    gates: str = "",
    hook: str = "",
    confirm_timeout: str = "60s",
    check_argv: str | None = None,
) -> str:
    """pullnix.yaml for the fake machine: one health check (by default, that the fake
    system's health file says ok; `check_argv` a YAML list to run instead)."""
    argv = check_argv or f'["/bin/grep", "-qx", "ok", "{sandbox.health_dir}/status"]'
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
      command: {{argv: {argv}}}
      timeout: 5s
      retries: 0
      interval: 100ms
  rollback:
    confirmTimeout: {confirm_timeout}
{gates}{hook}"""


@dataclass
class AgentProcess:
    """`pullnix agent` as a subprocess; its stdout and stderr go to `log`."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, timeout: float = 30) -> int:
        return terminate(self.proc, timeout)

    def kill(self) -> None:
        kill(self.proc)


@dataclass
class Machine:
    tmp: Path
    sandbox: Sandbox
    repo: FleetRepo
    paths: HelperPaths
    helper: HelperProcess
    agents: list[AgentProcess] = field(default_factory=list)
    base_config: str = ""

    def __post_init__(self) -> None:
        self.base_config = self.paths.config.read_text()

    @property
    def agent_socket(self) -> Path:
        return self.paths.socket.parent / "agent.sock"

    @property
    def api(self) -> AgentClient:
        return AgentClient(self.agent_socket, timeout=30)

    def configure(
        self,
        *,
        urls: list[str] | None = None,
        interval: str = "1h",
        jitter: str = "0s",
        webhook_listen: str = "",
        webhook_secret: str | None = None,
        metrics_listen: str = "",
        log_format: str = "",
        trace_url: str = "",
    ) -> None:
        """Write agent.toml: the helper's config plus [agent], [triggers] and, when
        `metrics_listen`, `log_format` or `trace_url` is given, [telemetry]."""
        urls = urls or [f"file://{self.repo.bare}"]
        base = re.sub(
            r"(?m)^urls = .*$",
            "urls = [" + ", ".join(f'"{u}"' for u in urls) + "]",
            self.base_config,
        )
        lines = [
            "[agent]",
            f'socket = "{self.agent_socket}"',
            "",
            "[triggers]",
            f'interval = "{interval}"',
            f'jitter = "{jitter}"',
        ]
        if webhook_listen:
            secret_file = self.tmp / "webhook-secret"
            secret_file.write_text((webhook_secret or "") + "\n")
            lines += [
                f'webhook_listen = "{webhook_listen}"',
                f'webhook_secret_file = "{secret_file}"',
            ]
        if metrics_listen or log_format or trace_url:
            lines += ["", "[telemetry]"]
            lines += [f'metrics_listen = "{metrics_listen}"'] if metrics_listen else []
            lines += [f'log_format = "{log_format}"'] if log_format else []
            lines += [f'trace_url = "{trace_url}"'] if trace_url else []
        self.paths.config.write_text(base + "\n" + "\n".join(lines) + "\n")

    def reconcile_argv(self) -> list[str]:
        return self.argv("reconcile", "--once", "--timeout", "120")

    def reconcile(self, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """`reconcile --once`; `env` replaces this process's environment when given."""
        return self.cli("reconcile", "--once", "--timeout", "120", timeout=180, env=env)

    def argv(self, *args: str) -> list[str]:
        return [str(PULLNIX), "--config", str(self.paths.config), *args]

    def cli(
        self, *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            env=None if env is None else dict(env),
        )

    def history(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = json.loads(self.cli("history", "--json").stdout)
        return entries

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.cli("status", "--json").stdout)
        return doc

    def condition(self, type_: str) -> dict[str, Any]:
        return next(c for c in self.status()["status"]["conditions"] if c["type"] == type_)

    def current(self) -> str:
        return str(self.sandbox.current_system.resolve())

    def built(self, sha: str) -> str:
        return build_toplevel(self.repo.flake_ref(sha), "edge-01")

    # -- the agent ----------------------------------------------------------------------

    def start_agent(
        self, *args: str, env: Mapping[str, str] | None = None, wait: bool = True
    ) -> AgentProcess:
        log = self.tmp / f"agent-{len(self.agents)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [str(PULLNIX), "--config", str(self.paths.config), "agent", *args],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                env={**os.environ, **(env or {})},
            )
        agent = AgentProcess(proc, log)
        self.agents.append(agent)
        if wait:
            wait_for(lambda: self._answers(agent), 30, f"the agent to answer:\n{log}")
        return agent

    def _answers(self, agent: AgentProcess) -> bool:
        if agent.proc.poll() is not None:
            raise AssertionError(f"the agent exited {agent.proc.returncode}:\n{agent.log_text()}")
        try:
            self.api.ping()
        except AgentUnavailable:
            return False
        return True

    def agent_status(self) -> dict[str, Any]:
        return self.api.request("status")["agent"]

    def passes(self) -> int:
        return int(self.agent_status()["passes"])

    def wait_idle(self, timeout: float = 120) -> dict[str, Any]:
        """Until the agent's last pass is settled and no pass is running or pending."""

        def idle() -> bool:
            agent = self.agent_status()
            last = agent["lastPass"]
            return bool(
                last and last["settled"] and not agent["running"] and not agent["following"]
            )

        wait_for(idle, timeout, "the agent to settle")
        return self.agent_status()

    def stop_agents(self) -> None:
        for agent in self.agents:
            agent.stop()


def wait_for(
    predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def agent_env(otel: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without any OTEL_* of its own, plus `otel`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return {**env, **(otel or {})}


@contextmanager
def fake_machine(tmp_path: Path, **configure: Any) -> Iterator[Machine]:
    """The fleet's first commit installed, a helper running, agent.toml written."""
    sandbox = make_sandbox(tmp_path)
    repo = init_fleet_repo(
        tmp_path, sandbox, version="1", files={"pullnix.yaml": spec_yaml(sandbox)}
    )
    install_system(sandbox, build_toplevel(repo.flake_ref(), "edge-01"))
    paths = write_helper_config(tmp_path, sandbox, urls=[f"file://{repo.bare}"])
    helper = start_helper(paths)
    machine = Machine(tmp_path, sandbox, repo, paths, helper)
    try:
        machine.configure(**configure)
        yield machine
    finally:
        machine.stop_agents()
        helper.stop()
        cleanup_socket_dir(paths)
