"""A real Prometheus (Debian's `prometheus` package) for the fleet tests, on loopback.

Owns starting and stopping `/usr/bin/prometheus` with the repository's
examples/prometheus/prometheus.yml, rewritten for the test: a 1 s scrape and
evaluation interval, the given agents as targets, the alert rules by absolute
path, its data dir under the test's tmp dir. It keeps its port across a
restart (the agents' `[fleet] prometheus_url` stays right) and reads through
pullnix's own Prometheus client.

Must not: use a fixed port or touch anything outside its directory.
"""

from __future__ import annotations

import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from reconciler.telemetry.fleet_query import Prometheus
from tests.support.agentmachine import wait_for
from tests.support.gitserve import free_port
from tests.support.helperproc import terminate

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "prometheus"
BINARY = shutil.which("prometheus") or "/usr/bin/prometheus"


class PrometheusServer:
    def __init__(self, root: Path, targets: list[str]) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = Prometheus(self.url, timeout=5)
        self.proc: subprocess.Popen[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = yaml.safe_load((EXAMPLES / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(EXAMPLES / name) for name in config["rule_files"]]
        config["scrape_configs"][0]["static_configs"] = [{"targets": targets}]
        self.config = root / "prometheus.yml"
        self.config.write_text(yaml.safe_dump(config))
        self.log = root / "prometheus.log"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    BINARY,
                    f"--config.file={self.config}",
                    f"--storage.tsdb.path={self.root / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
            )
        wait_for(self._ready, 60, f"Prometheus to be ready (log: {self.log})", interval=0.2)

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited {self.proc.returncode}:\n{self.log_text()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None:
            terminate(self.proc, 30)
            self.proc = None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def firing(self, alertname: str) -> list[dict[str, str]]:
        """The labels of the firing alerts named `alertname`, read through ALERTS."""
        query = f'ALERTS{{alertname="{alertname}", alertstate="firing"}}'
        return [labels for labels, _ in self.api.vector(query)]
