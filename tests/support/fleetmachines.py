"""A fleet of fake machines following one repository, each with its own helper and agent.

Owns what the wave tests (and the fleet benchmark's rollout) share: one bare
fleet repository whose fixture.json gives every host its own sandbox
(`sandboxes.<host>`), one `Machine` per host (tests/support/agentmachine.py:
sandbox with the first commit installed, a real `pullnix-helper`, agent.toml
with `host`, a metrics port of its own and `[fleet] prometheus_url`), and a
pullnix.yaml with `spec.rollout.waves` whose health check reads each host's
own health file.

Must not: mock anything; the agents, helpers, git and Nix are the real ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from reconciler.demo.fakenixos import KNOBS_FILE
from tests.support.agentmachine import Machine
from tests.support.gitserve import free_port
from tests.support.helperproc import cleanup_socket_dir, start_helper, write_helper_config
from tests.support.nixfixture import (
    FleetRepo,
    Sandbox,
    build_toplevel,
    commit_fleet,
    init_fleet_repo,
    install_system,
    make_sandbox,
)


def fleet_spec(sandboxes: dict[str, Sandbox], waves: str) -> str:
    """pullnix.yaml: `waves` (YAML under spec.rollout, indented 4) and each host's check."""
    overrides = "".join(
        f"""    "{host}":
      healthChecks:
        - name: health-file
          command: {{argv: ["/bin/grep", "-qx", "ok", "{sandbox.health_dir}/status"]}}
          timeout: 5s
          retries: 0
          interval: 100ms
"""
        for host, sandbox in sandboxes.items()
    )
    return f"""\
apiVersion: pullnix.dev/v1alpha1
kind: NixOSDeployment
metadata:
  name: fleet
spec:
  configuration:
    flake: "nixosConfigurations.{{host}}"
  rollback:
    confirmTimeout: 60s
  rollout:
{waves}  hosts:
{overrides}"""


@dataclass
class Fleet:
    repo: FleetRepo
    machines: dict[str, Machine]
    sandboxes: dict[str, Sandbox]
    metrics_ports: dict[str, int]

    @property
    def targets(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.metrics_ports.values()]

    def spec(self, waves: str) -> str:
        return fleet_spec(self.sandboxes, waves)

    def commit(self, waves: str, **knobs: object) -> str:
        return commit_fleet(self.repo, files={"pullnix.yaml": self.spec(waves)}, **knobs)

    def configure(self, prometheus_url: str, interval: str = "1s") -> None:
        """agent.toml of every machine: a short interval, metrics, the fleet's Prometheus."""
        for host, machine in self.machines.items():
            machine.configure(
                interval=interval, metrics_listen=f"127.0.0.1:{self.metrics_ports[host]}"
            )
            with machine.paths.config.open("a") as out:
                out.write(f'\n[fleet]\nprometheus_url = "{prometheus_url}"\nquery_timeout = "2s"\n')


@contextmanager
def fake_fleet(tmp: Path, hosts: Sequence[str], waves: str) -> Iterator[Fleet]:
    """Every host installed with the fleet's first commit and its helper running."""
    sandboxes = {host: make_sandbox(tmp / host) for host in hosts}
    first = sandboxes[hosts[0]]
    repo = init_fleet_repo(tmp, first, hosts=tuple(hosts))
    doc = json.loads((repo.worktree / KNOBS_FILE).read_text())
    doc["sandboxes"] = {host: str(s.root) for host, s in sandboxes.items()}
    fixture = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    sha = commit_fleet(
        repo, files={KNOBS_FILE: fixture, "pullnix.yaml": fleet_spec(sandboxes, waves)}
    )
    with ExitStack() as stack:
        machines: dict[str, Machine] = {}
        for host in hosts:
            install_system(sandboxes[host], build_toplevel(repo.flake_ref(sha), host))
            paths = write_helper_config(tmp / host, sandboxes[host], urls=[f"file://{repo.bare}"])
            text = paths.config.read_text().replace('host = "edge-01"', f'host = "{host}"', 1)
            paths.config.write_text(text)
            helper = start_helper(paths)
            stack.callback(cleanup_socket_dir, paths)
            stack.callback(helper.stop)
            machine = Machine(tmp / host, sandboxes[host], repo, paths, helper)
            stack.callback(machine.stop_agents)
            machines[host] = machine
        yield Fleet(repo, machines, sandboxes, {host: free_port() for host in hosts})
