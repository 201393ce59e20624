"""A real Jaeger v2 for tests: all-in-one, memory storage, every listener on 127.0.0.1.

Owns finding the binary (`scripts/install-jaeger.sh` installs it once and caches it;
the tests skip only when that script says Jaeger cannot be installed here, and never
under PULLNIX_REQUIRE_JAEGER=1, as CI runs them), starting it on loopback ports chosen
free at run time, proving that it listens on nothing else, and reading traces back
through its HTTP query API (`/api/services`, `/api/traces/<id>`,
`/api/traces?service=...`) as plain `JaegerSpan` values.

Jaeger runs with examples/jaeger/jaeger.yaml, the file users are told to run, its
addresses set through its JAEGER_* variables. That file names every component that
listens and binds each one explicitly (the defaults of Jaeger and of the OpenTelemetry
Collector it is built on are all interfaces, or `localhost`, on fixed ports): the OTLP
receiver's gRPC and HTTP endpoints, the query extension's HTTP (API and UI) and gRPC
endpoints, the v2 health check over HTTP only, and the collector's own Prometheus
metrics. `Jaeger.start` checks against the process's sockets in /proc that it listens
on exactly those and nothing else.

Must not: decode OTLP itself; what the tests assert is what Jaeger stored and answers.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "scripts" / "install-jaeger.sh"
T = TypeVar("T")
CONFIG = ROOT / "examples" / "jaeger" / "jaeger.yaml"
LISTENERS = ("otlp_grpc", "otlp_http", "query_http", "query_grpc", "health", "metrics")


def jaeger_binary() -> Path:
    """The cached Jaeger binary, installed first if need be; skips if it cannot be here.
    PULLNIX_JAEGER_BINARY names another one to use (a release build, say)."""
    chosen = os.environ.get("PULLNIX_JAEGER_BINARY")
    if chosen:
        assert os.access(chosen, os.X_OK), f"PULLNIX_JAEGER_BINARY={chosen}: not a program"
        return Path(chosen)
    done = subprocess.run(
        ["bash", str(INSTALL)], capture_output=True, text=True, timeout=5400, check=False
    )
    if done.returncode == 2:
        pytest.skip(f"Jaeger cannot be installed on this machine: {done.stderr.strip()}")
    if done.returncode != 0:
        pytest.fail(f"scripts/install-jaeger.sh failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1])


def config_env(ports: Mapping[str, int]) -> dict[str, str]:
    """The variables examples/jaeger/jaeger.yaml reads: 127.0.0.1, and `ports`."""
    return {
        "JAEGER_LISTEN_HOST": "127.0.0.1",
        **{f"JAEGER_{name.upper()}_PORT": str(port) for name, port in ports.items()},
    }


@dataclass(frozen=True)
class JaegerSpan:
    """One span as Jaeger's /api/traces answers it (times in microseconds)."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str  # "" for a root
    start_us: int
    duration_us: int
    tags: Mapping[str, Any]
    service: str
    process_tags: Mapping[str, Any]
    logs: tuple[tuple[int, Mapping[str, Any]], ...]  # OTLP events: (time, fields incl. event)
    links: tuple[tuple[str, str], ...]  # FOLLOWS_FROM references: (trace id, span id)

    @property
    def end_us(self) -> int:
        return self.start_us + self.duration_us

    @property
    def error(self) -> bool:
        return self.tags.get("error") is True or self.tags.get("otel.status_code") == "ERROR"

    @property
    def status_message(self) -> str:
        return str(self.tags.get("otel.status_description", ""))

    @property
    def events(self) -> list[str]:
        return [str(fields.get("event")) for _, fields in self.logs]


def _tags(raw: list[dict[str, Any]] | None) -> dict[str, Any]:
    return {t["key"]: t["value"] for t in raw or ()}


def spans_of(trace: Mapping[str, Any]) -> list[JaegerSpan]:
    """The spans of one trace of /api/traces' `data`, oldest first."""
    processes = trace.get("processes") or {}
    out = []
    for s in trace.get("spans") or ():
        process = processes.get(s.get("processID"), {})
        refs = s.get("references") or []
        parent = next(
            (
                r["spanID"]
                for r in refs
                if r["refType"] == "CHILD_OF" and r["traceID"] == s["traceID"]
            ),
            "",
        )
        out.append(
            JaegerSpan(
                name=s["operationName"],
                trace_id=s["traceID"],
                span_id=s["spanID"],
                parent_span_id=parent,
                start_us=int(s["startTime"]),
                duration_us=int(s["duration"]),
                tags=_tags(s.get("tags")),
                service=str(process.get("serviceName", "")),
                process_tags=_tags(process.get("tags")),
                logs=tuple(
                    (int(lg["timestamp"]), _tags(lg.get("fields"))) for lg in s.get("logs") or ()
                ),
                links=tuple(
                    (r["traceID"], r["spanID"])
                    for r in refs
                    if r["refType"] == "FOLLOWS_FROM" or r["traceID"] != s["traceID"]
                ),
            )
        )
    return sorted(out, key=lambda x: (x.start_us, x.name))


class Jaeger:
    """One Jaeger process; `query` is the base URL of its UI and API."""

    def __init__(self, binary: Path, workdir: Path) -> None:
        self.binary = binary
        self.workdir = workdir
        self.ports: dict[str, int] = {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = workdir / "jaeger.log"

    @property
    def query(self) -> str:
        return f"http://127.0.0.1:{self.ports['query_http']}"

    def otlp_endpoint(self, protocol: str) -> str:
        """OTEL_EXPORTER_OTLP_ENDPOINT for `http/protobuf` or `grpc`."""
        port = self.ports["otlp_grpc" if protocol == "grpc" else "otlp_http"]
        return f"http://127.0.0.1:{port}"

    def start(self, attempts: int = 3) -> Jaeger:
        """Start on free ports (again on others if one was taken meanwhile), wait for it."""
        for attempt in range(attempts):
            self.ports = _free_ports(LISTENERS)
            env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "JAEGER_"))}
            with self.log.open("ab") as log:
                self.proc = subprocess.Popen(
                    [str(self.binary), "--config", f"file:{CONFIG}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env={**env, **config_env(self.ports)},
                )
            if self._wait_ready():
                self._check_listeners()
                return self
            self.stop()
            if "address already in use" not in self.log_text() or attempt == attempts - 1:
                break
        raise AssertionError(f"Jaeger did not start:\n{self.log_text()[-4000:]}")

    def _wait_ready(self, timeout: float = 60.0) -> bool:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.ports['health']}/status", timeout=2
                ) as answer:
                    if answer.status == 200 and self.services() is not None:
                        return True
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        return False

    def _check_listeners(self) -> None:
        assert self.proc is not None
        found = listening(self.proc.pid)
        expected = {("127.0.0.1", p) for p in self.ports.values()}
        assert found == expected, f"Jaeger listens on {sorted(found)}, not {sorted(expected)}"

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- the query API -----------------------------------------------------------------

    def get(self, path: str, **params: str) -> tuple[int, Any]:
        """GET `path` of the query API: (HTTP status, the JSON it answered, or None)."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            with urllib.request.urlopen(f"{self.query}{path}{query}", timeout=10) as answer:
                return answer.status, json.loads(answer.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, None

    def services(self) -> list[str] | None:
        status, body = self.get("/api/services")
        return sorted(body.get("data") or []) if status == 200 else None

    def trace(self, trace_id: str) -> list[JaegerSpan]:
        """The spans Jaeger holds for `trace_id` ([] when it has none)."""
        status, body = self.get(f"/api/traces/{trace_id}")
        if status == 404:
            return []
        assert status == 200, f"/api/traces/{trace_id} answered {status}"
        traces = body.get("data") or []
        return spans_of(traces[0]) if traces else []

    def search(self, service: str, **tags: str) -> list[list[JaegerSpan]]:
        """The traces of `service` that have a span with all of `tags`."""
        now_us = int(time.time() * 1_000_000)
        params = {
            "service": service,
            "start": str(now_us - 3_600_000_000),
            "end": str(now_us + 60_000_000),
            "limit": "1000",
        }
        if tags:
            params["tags"] = json.dumps(tags)
        status, body = self.get("/api/traces", **params)
        assert status == 200, f"/api/traces?{params} answered {status}"
        return [spans_of(t) for t in body.get("data") or []]

    def wait_until(self, probe: Callable[[], T], what: str, timeout: float = 60.0) -> T:
        """Poll `probe()` until it answers something true; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        while not (answer := probe()):
            if time.monotonic() > deadline:
                raise AssertionError(f"Jaeger never showed {what} within {timeout}s")
            time.sleep(0.3)
        return answer

    def wait_for_trace(
        self,
        trace_id: str,
        until: Callable[[list[JaegerSpan]], bool],
        what: str,
        timeout: float = 60.0,
    ) -> list[JaegerSpan]:
        """Poll /api/traces/<id> until `until(spans)` holds; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        spans = self.trace(trace_id)
        while not until(spans):
            if time.monotonic() > deadline:
                names = [s.name for s in spans]
                raise AssertionError(f"Jaeger never showed {what} in {trace_id}; it has {names}")
            time.sleep(0.3)
            spans = self.trace(trace_id)
        return spans


@contextmanager
def running_jaeger(workdir: Path) -> Iterator[Jaeger]:
    binary = jaeger_binary()
    workdir.mkdir(parents=True, exist_ok=True)
    jaeger = Jaeger(binary, workdir)
    with ExitStack() as stack:
        stack.callback(jaeger.stop)
        yield jaeger.start()


def _free_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Distinct loopback ports nothing listens on, held together while picked."""
    socks = []
    try:
        for _ in names:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            socks.append(sock)
        return {name: s.getsockname()[1] for name, s in zip(names, socks, strict=True)}
    finally:
        for sock in socks:
            sock.close()


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) of every TCP socket process `pid` listens on, and of its UDP ones."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    found = set()
    for table, listen_only in (("tcp", True), ("tcp6", True), ("udp", False), ("udp6", False)):
        lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if inode not in inodes or (listen_only and state != "0A"):
                continue
            address, port = local.split(":")
            found.add((_address(address), int(port, 16)))
    return found


def _address(hexed: str) -> str:
    if len(hexed) == 8:  # IPv4, little-endian
        return socket.inet_ntop(socket.AF_INET, bytes.fromhex(hexed)[::-1])
    raw = bytes.fromhex(hexed)
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(socket.AF_INET6, words)
