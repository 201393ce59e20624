"""What `pullnix agent` tells the outside world: /metrics, sd_notify, its log lines, dropped spans.

The agent runs as a real process against the real-Nix fixture machine and a
real helper (tests/support/agentmachine.py). /metrics is fetched over HTTP
and parsed with prometheus-client's own parser; sd_notify datagrams arrive on
an AF_UNIX socket the test binds; log lines are read from the agent's stderr
and parsed back (JSON, or logfmt by the rules in reconciler/telemetry/logs.py);
the trace collector that is down is a loopback port nothing listens on.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.agentmachine import Machine, fake_machine, wait_for
from tests.support.gitserve import free_port
from tests.support.nixfixture import commit_fleet
from tests.support.otlp import closed_port

pytestmark = [pytest.mark.nix, pytest.mark.slow]


class Scrape:
    """One /metrics page, parsed: every sample by name and labels."""

    def __init__(self, port: int) -> None:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
            self.text = answer.read().decode()
        self.samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def by(self, name: str, label: str) -> dict[str, float]:
        """The samples of `name`, keyed by the value of `label`."""
        return {
            dict(key)[label]: v
            for (n, key), v in self.samples.items()
            if n == name and label in dict(key)
        }

    def labelled(self, name: str) -> list[dict[str, str]]:
        return [dict(key) for (n, key) in self.samples if n == name]


def history(machine: Machine) -> list[dict[str, Any]]:
    done = machine.cli("history", "--json")
    assert done.returncode == 0, done.stderr
    entries: list[dict[str, Any]] = json.loads(done.stdout)
    return entries


def test_metrics_follow_a_deploy_a_rollback_a_suspend_and_a_dead_remote(tmp_path: Path) -> None:
    port = free_port()
    listen = f"127.0.0.1:{port}"
    started = time.time()
    with fake_machine(tmp_path, metrics_listen=listen) as machine:
        machine.start_agent()
        first = machine.wait_idle()
        m0 = Scrape(port)
        assert sum(m0.by("pullnix_reconcile_passes_total", "result").values()) == first["passes"]
        assert m0.value("pullnix_rollbacks_total") == 0
        assert m0.value("pullnix_reboot_required") == 0
        assert m0.value("pullnix_suspended") == 0
        assert m0.value("pullnix_fetch_failures_total") == 0
        generation0 = m0.value("pullnix_current_generation")
        assert generation0 == machine.status()["status"]["currentGeneration"]
        success0 = m0.value("pullnix_last_success_timestamp_seconds")
        assert success0 is not None
        assert started <= success0 <= time.time()
        assert not m0.labelled("process_cpu_seconds_total")  # a registry of its own

        # a deploy with a new kernel: applied, healthy, and a reboot is due (policy: never)
        good = commit_fleet(machine.repo, version="2", kernel="6.2.0-fixture")
        wait_for(lambda: machine.current() == machine.built(good), 120, "the deploy")
        wait_for(lambda: history(machine)[0]["revision"] == good, 60, "its verdict")
        assert history(machine)[0]["result"] == "Succeeded"
        machine.wait_idle()
        m1 = Scrape(port)
        status = machine.status()["status"]
        assert (
            m1.value(
                "pullnix_deployed_revision_info", revision=good, store_path=machine.built(good)
            )
            == 1
        )
        assert len(m1.labelled("pullnix_deployed_revision_info")) == 1
        generation1 = m1.value("pullnix_current_generation")
        assert generation1 == status["currentGeneration"]
        assert generation0 is not None
        assert generation1 is not None
        assert generation1 > generation0
        # (the first pass deployed the installed commit too: the record had none applied)
        assert m1.value("pullnix_deployments_total", result="Succeeded") == 1 + (
            m0.value("pullnix_deployments_total", result="Succeeded") or 0
        )
        assert m1.value("pullnix_health_check_up", check="health-file") == 1
        assert m1.value("pullnix_rollbacks_total") == 0
        assert m1.value("pullnix_reboot_required") == 1
        assert m1.by("pullnix_reconcile_passes_total", "result")["Progressing"] >= 1
        success1 = m1.value("pullnix_last_success_timestamp_seconds")
        assert success0 is not None
        assert success1 is not None
        assert success1 > success0

        # a deploy whose health check fails: rolled back
        bad = commit_fleet(machine.repo, version="3", health="broken")
        wait_for(lambda: history(machine)[0]["result"] == "RolledBack", 120, "the rollback")
        agent = machine.wait_idle()
        m2 = Scrape(port)
        assert m2.value("pullnix_rollbacks_total") == 1
        assert m2.value("pullnix_deployments_total", result="RolledBack") == 1
        assert m2.value("pullnix_health_check_up", check="health-file") == 0
        assert machine.current() == machine.built(good)
        assert (
            m2.value(
                "pullnix_deployed_revision_info", revision=good, store_path=machine.built(good)
            )
            == 1
        )
        assert not [
            i for i in m2.labelled("pullnix_deployed_revision_info") if i["revision"] == bad
        ]
        assert (
            m2.value("pullnix_current_generation")
            == (machine.status()["status"]["currentGeneration"])
        )
        passes = m2.by("pullnix_reconcile_passes_total", "result")
        assert passes["Failing"] >= 1  # the rolled-back revision, not tried again
        assert sum(passes.values()) == agent["passes"]
        assert m2.by("pullnix_reconcile_duration_seconds_count", "result") == passes
        assert m2.value("pullnix_reconcile_last_exit_code") == agent["lastPass"]["exitCode"]

        # suspended through the agent
        assert machine.cli("suspend").returncode == 0
        wait_for(
            lambda: Scrape(port).value("pullnix_suspended") == 1, 30, "pullnix_suspended to be 1"
        )
        assert machine.cli("resume").returncode == 0
        wait_for(
            lambda: Scrape(port).value("pullnix_suspended") == 0,
            30,
            "pullnix_suspended to be 0 again",
        )

        # the only remote is dead: the config reload brings a pass whose fetch fails
        machine.configure(
            urls=[f"http://127.0.0.1:{closed_port()}/fleet.git"], metrics_listen=listen
        )
        # (the failure is counted inside the pass, the exit code once the pass is over)
        wait_for(
            lambda: (
                (Scrape(port).value("pullnix_fetch_failures_total") or 0) >= 1
                and Scrape(port).value("pullnix_reconcile_last_exit_code") == 1
            ),
            90,
            "a fetch failure to be counted and its pass to end",
        )
        m3 = Scrape(port)
        assert m3.by("pullnix_reconcile_passes_total", "result")["Failing"] > passes["Failing"]
        assert m3.value("pullnix_reconcile_last_exit_code") == 1
        assert m3.value("pullnix_current_generation") == m2.value("pullnix_current_generation")


# -- sd_notify ------------------------------------------------------------------------


@pytest.fixture
def notify_socket() -> Iterator[socket.socket]:
    """An AF_UNIX datagram socket like systemd's, at a short path (sun_path is 108 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="pn-notify-"))
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(directory / "notify"))
    sock.settimeout(0.2)
    try:
        yield sock
    finally:
        sock.close()
        shutil.rmtree(directory)


def datagrams(sock: socket.socket, until: float) -> list[list[str]]:
    """Every datagram that arrives before `until` (monotonic), each as its lines."""
    out: list[list[str]] = []
    while time.monotonic() < until:
        try:
            out.append(sock.recv(4096).decode().split("\n"))
        except TimeoutError:
            continue
    return out


class Listener:
    """Reads the notify socket all along, as systemd does (an unread socket fills after
    net.unix.max_dgram_qlen datagrams, 10 by default)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[list[str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            self.seen += datagrams(self.sock, time.monotonic() + 0.2)

    def stop(self) -> list[list[str]]:
        self._stop.set()
        self._thread.join(5)
        return self.seen + datagrams(self.sock, time.monotonic() + 0.3)


def test_sd_notify_ready_status_and_watchdog_reach_a_real_socket(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    address = notify_socket.getsockname()
    listener = Listener(notify_socket)
    with fake_machine(tmp_path) as machine:
        agent = machine.start_agent(env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        machine.wait_idle()
        # every 0.1s (half of WATCHDOG_USEC) while the worker lives; a loaded machine
        # may take longer than 0.5 s for five, so wait for them rather than a while
        wait_for(
            lambda: sum(d == ["WATCHDOG=1"] for d in listener.seen) >= 5, 60, "5 watchdog pings"
        )
        assert agent.stop() == 0
        seen = listener.stop()

    ready = [d for d in seen if "READY=1" in d]
    assert len(ready) == 1
    assert ready[0] == ["READY=1", f"STATUS=watching file://{machine.repo.bare}"]
    statuses = [line for d in seen for line in d if line.startswith("STATUS=")]
    assert any(re.fullmatch(r"STATUS=Ready: .+", s) for s in statuses), statuses
    assert sum(d == ["WATCHDOG=1"] for d in seen) >= 5
    assert seen[-1] == ["STOPPING=1", "STATUS=stopping"]
    assert all(line.count("=") >= 1 for d in seen for line in d)


def test_without_watchdog_usec_no_watchdog_pings_are_sent(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    listener = Listener(notify_socket)
    with fake_machine(tmp_path) as machine:
        agent = machine.start_agent(env={"NOTIFY_SOCKET": notify_socket.getsockname()})
        machine.wait_idle()
        time.sleep(2.5)
        assert agent.stop() == 0
        seen = listener.stop()
    assert [d for d in seen if "READY=1" in d]
    assert not [d for d in seen if "WATCHDOG=1" in d]
    assert [d for d in seen if "STOPPING=1" in d]


# -- logs -----------------------------------------------------------------------------

_LOGFMT_PAIR = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|[^\s"]*)(?:\s+|$)')


def parse_logfmt(line: str) -> dict[str, str]:
    """One logfmt line as fields; AssertionError unless the whole line is key=value pairs."""
    fields: dict[str, str] = {}
    pos = 0
    while pos < len(line):
        match = _LOGFMT_PAIR.match(line, pos)
        assert match is not None, f"not logfmt at {pos}: {line!r}"
        key, raw = match.groups()
        if raw.startswith('"'):
            raw = re.sub(
                r"\\(.)",
                lambda m: {"n": "\n", "r": "\r", "t": "\t"}.get(m.group(1), m.group(1)),
                raw[1:-1],
            )
        assert key not in fields, f"{key} twice in {line!r}"
        fields[key] = raw
        pos = match.end()
    return fields


@pytest.mark.parametrize("log_format", ["logfmt", "json"])
def test_every_log_line_is_structured_and_a_pass_logs_under_its_trace(
    tmp_path: Path, log_format: str
) -> None:
    with fake_machine(tmp_path, log_format=log_format) as machine:
        agent = machine.start_agent()
        machine.wait_idle()
        sha = commit_fleet(machine.repo, version="2")
        wait_for(lambda: history(machine)[0]["revision"] == sha, 120, "the deploy")
        machine.wait_idle()
        deploys = history(machine)
        assert [h["result"] for h in deploys] == ["Succeeded", "Succeeded"]
        assert agent.stop() == 0
        text = agent.log_text()

    lines = text.splitlines()
    assert len(lines) > 5
    parse = json.loads if log_format == "json" else parse_logfmt
    records: list[dict[str, Any]] = []
    for line in lines:
        record = parse(line)
        assert isinstance(record, dict), line
        records.append(record)
    for record in records:
        assert list(record)[:4] == ["time", "level", "logger", "msg"], record
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record["time"])
        assert record["level"] in ("debug", "info", "warning", "error", "critical")
        assert ("trace_id" in record) == ("span_id" in record)
        if "trace_id" in record:
            assert re.fullmatch(r"[0-9a-f]{32}", record["trace_id"])
            assert re.fullmatch(r"[0-9a-f]{16}", record["span_id"])
    # each pass that decided a deploy (the installed commit, adopted, then the push) logged
    # under the trace its history entry keeps
    decided = [r for r in records if r["msg"] == "decided Deploy"]
    assert [r.get("trace_id") for r in decided] == [h["traceId"] for h in reversed(deploys)]
    # the loop's own lines are outside any pass
    starts = [r for r in records if re.fullmatch(r"pass \d+ starts \(.*\)", r["msg"])]
    assert starts
    assert all("trace_id" not in r for r in starts)
    # every pass logs under a trace of its own
    passes = [r["trace_id"] for r in records if r["msg"].startswith("decided ")]
    assert len(passes) == len(set(passes)) >= 2


# -- spans dropped while the collector is down -----------------------------------------


def test_spans_a_down_collector_never_gets_are_counted_and_the_pass_succeeds(
    tmp_path: Path,
) -> None:
    port = free_port()
    otel = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    with fake_machine(tmp_path, metrics_listen=f"127.0.0.1:{port}") as machine:
        machine.start_agent(env=otel)
        agent = machine.wait_idle()
        assert agent["lastPass"]["exitCode"] == 0
        assert agent["lastPass"]["phase"] == "Ready"
        # root, source.fetch, source.verify, spec.load, system.observe: 5 spans a pass
        wait_for(
            lambda: (
                (
                    Scrape(port).value("pullnix_trace_spans_dropped_total", reason="export_failed")
                    or 0
                )
                >= 5 * agent["passes"]
            ),
            60,
            "the failed exports to be counted",
        )
        assert Scrape(port).value("pullnix_trace_spans_dropped_total", reason="queue_full") is None


def answers(port: int) -> bool:
    try:
        Scrape(port)
    except OSError:
        return False
    return True


def test_a_config_reload_moves_the_metrics_listener_and_switches_the_log_format(
    tmp_path: Path,
) -> None:
    first, second = free_port(), free_port()
    with fake_machine(tmp_path, metrics_listen=f"127.0.0.1:{first}") as machine:
        agent = machine.start_agent()
        passes = machine.wait_idle()["passes"]
        assert answers(first)
        machine.configure(metrics_listen=f"127.0.0.1:{second}", log_format="json")
        wait_for(lambda: answers(second), 30, "/metrics on the new port")
        assert not answers(first)
        # the counts carried over to the new listener: the reload's own pass adds to them
        # (a reset would leave 1 after it, never more than `passes`)
        wait_for(
            lambda: (
                sum(Scrape(second).by("pullnix_reconcile_passes_total", "result").values()) > passes
            ),
            30,
            "the reload's pass to be counted on top of the earlier ones",
        )
        assert agent.stop() == 0
        lines = agent.log_text().splitlines()

    switched = next(i for i, line in enumerate(lines) if "log format is now json" in line)
    assert all(parse_logfmt(line)["time"] for line in lines[:switched])
    after = [json.loads(line) for line in lines[switched:]]
    assert after[0]["msg"] == "log format is now json"
    assert any(r["msg"] == "stopping" for r in after)


def test_a_metrics_listen_that_is_not_host_port_stops_the_agent_at_start(tmp_path: Path) -> None:
    with fake_machine(tmp_path, metrics_listen="9171") as machine:
        agent = machine.start_agent(wait=False)
        assert agent.proc.wait(timeout=60) == 1
    assert "telemetry.metrics_listen: '9171' is not host:port" in agent.log_text()


def test_a_notify_socket_nobody_reads_never_stalls_the_agent(
    tmp_path: Path, notify_socket: socket.socket
) -> None:
    """Its queue fills after 10 datagrams; the agent drops what does not fit and goes on."""
    with fake_machine(tmp_path) as machine:
        agent = machine.start_agent(
            env={"NOTIFY_SOCKET": notify_socket.getsockname(), "WATCHDOG_USEC": "100000"}
        )
        machine.wait_idle()
        time.sleep(1.5)  # twenty-odd pings by now: the queue is full
        sha = commit_fleet(machine.repo, version="2")
        wait_for(lambda: machine.current() == machine.built(sha), 60, "the deploy")
        assert machine.wait_idle()["lastPass"]["exitCode"] == 0
        assert agent.stop(timeout=10) == 0
