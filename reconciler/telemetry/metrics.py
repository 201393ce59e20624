"""Prometheus metrics of the agent, in a registry of their own, served on `metrics_listen`.

Owns the metric names and labels (`pullnix_*`), the registry they live in
(never the process-wide default one, so nothing else leaks into /metrics),
the HTTP server that exposes them, and small functions the controller calls
to update them. Every function here is cheap and never raises. Nothing is
counted, and prometheus_client is not even loaded (a few MB of an idle
agent), until metrics are served: `start_metrics_server` (or `enable`).

Must not: decide anything or read state of its own; callers pass the facts.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

log = logging.getLogger("pullnix.telemetry")


class _Metrics:
    """The registry and every metric in it; made when metrics are first served."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

        self.registry = registry = CollectorRegistry(auto_describe=True)
        self.passes = Counter(
            "pullnix_reconcile_passes",
            "Reconcile passes, by result.",
            ["result"],
            registry=registry,
        )
        self.duration = Histogram(
            "pullnix_reconcile_duration_seconds",
            "How long a reconcile pass took, by result.",
            ["result"],
            registry=registry,
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )
        self.last_success = Gauge(
            "pullnix_last_success_timestamp_seconds",
            "When a pass last ended converged and healthy (exit code 0), Unix time.",
            registry=registry,
        )
        self.last_exit = Gauge(
            "pullnix_reconcile_last_exit_code",
            "The exit code `reconcile --once` would give for the last pass "
            "(0 ok, 3 not ready, 1 error).",
            registry=registry,
        )
        self.deployed = Info(
            "pullnix_deployed_revision",
            "The revision last applied and its store path.",
            registry=registry,
        )
        self.generation = Gauge(
            "pullnix_current_generation",
            "The system profile generation now running.",
            registry=registry,
        )
        self.rollbacks = Counter(
            "pullnix_rollbacks", "Deployments the helper rolled back.", registry=registry
        )
        self.deployments = Counter(
            "pullnix_deployments",
            "Helper operations that ended, by result.",
            ["result"],
            registry=registry,
        )
        self.check_up = Gauge(
            "pullnix_health_check_up",
            "1 if the health check passed in the last finished deployment, else 0.",
            ["check"],
            registry=registry,
        )
        self.reboot = Gauge(
            "pullnix_reboot_required",
            "1 if the running system's kernel or initrd differs from the booted one.",
            registry=registry,
        )
        self.suspended = Gauge(
            "pullnix_suspended", "1 while reconciliation is suspended.", registry=registry
        )
        self.fetch_failures = Counter(
            "pullnix_fetch_failures",
            "Passes whose fetch from the source failed.",
            registry=registry,
        )
        self.spans_dropped = Counter(
            "pullnix_trace_spans_dropped",
            "Trace spans never delivered: queue full, or export failed.",
            ["reason"],
            registry=registry,
        )
        self.source_commit_time = Gauge(
            "pullnix_source_commit_timestamp_seconds",
            "When the commit the machine follows was made (committer time), Unix time.",
            registry=registry,
        )
        self.source_stale = Gauge(
            "pullnix_source_stale",
            "1 while the followed commit is older than [source] max_age (SourceStale).",
            registry=registry,
        )


_metrics: _Metrics | None = None


def enable() -> _Metrics:
    """The metrics, made (and prometheus_client loaded) on first use."""
    global _metrics
    if _metrics is None:
        _metrics = _Metrics()
    return _metrics


def enabled() -> bool:
    """Whether metrics are served (and so worth counting) in this process."""
    return _metrics is not None


def registry() -> Any:
    """The registry /metrics serves (enabling metrics if they were not yet)."""
    return enable().registry


_servers: list[Any] = []


def parse_listen(listen: str) -> tuple[str, int]:
    """`host:port` (or `[v6]:port`) as a pair; ValueError saying what is wrong."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise ValueError(
            f"telemetry.metrics_listen: {listen!r} is not host:port (e.g. 127.0.0.1:9171)"
        )
    return host.strip("[]"), int(port)


def start_metrics_server(listen: str) -> None:
    """Serve /metrics on `listen` ("host:port") from a daemon thread; "" does nothing."""
    if not listen:
        return
    from prometheus_client.exposition import start_http_server

    host, port = parse_listen(listen)
    server, _thread = start_http_server(port, addr=host, registry=registry())
    _servers.append(server)
    log.info("metrics on http://%s:%d/metrics", host, port)


def stop_metrics_servers() -> None:
    """Close the servers `start_metrics_server` opened (for tests and a clean exit)."""
    while _servers:
        server = _servers.pop()
        server.shutdown()
        server.server_close()


def observe_pass(result: str, seconds: float, exit_code: int) -> None:
    """Count one pass; `result` is a short label such as the outcome's phase."""
    if (m := _metrics) is None:
        return
    m.passes.labels(result=result).inc()
    m.duration.labels(result=result).observe(max(seconds, 0.0))
    m.last_exit.set(exit_code)
    if exit_code == 0:
        m.last_success.set(time.time())


def record_operation(result: str, kind: str, checks: Iterable[Mapping[str, Any]]) -> None:
    """A helper operation ended: its result and its health checks' verdicts."""
    if (m := _metrics) is None:
        return
    m.deployments.labels(result=result).inc()
    if result == "RolledBack" and kind == "apply":
        m.rollbacks.inc()
    for check in checks:
        name = check.get("name")
        if name:
            m.check_up.labels(check=str(name)).set(1 if check.get("ok") else 0)


def record_state(
    *,
    revision: str | None,
    store_path: str | None,
    generation: int | None,
    reboot_required: bool | None,
    suspended: bool,
) -> None:
    """What the machine runs and wants, as the pass left it (None: not known this pass)."""
    if (m := _metrics) is None:
        return
    if revision:
        m.deployed.info({"revision": revision, "store_path": store_path or ""})
    if generation is not None:
        m.generation.set(generation)
    if reboot_required is not None:
        m.reboot.set(1 if reboot_required else 0)
    m.suspended.set(1 if suspended else 0)


def record_source_freshness(committed_at: float, stale: bool) -> None:
    """The followed commit's time and whether it is older than max_age."""
    if (m := _metrics) is not None:
        m.source_commit_time.set(committed_at)
        m.source_stale.set(1 if stale else 0)


def record_fetch_failure() -> None:
    if (m := _metrics) is not None:
        m.fetch_failures.inc()


def record_spans_dropped(count: int, reason: str) -> None:
    if count > 0 and (m := _metrics) is not None:
        m.spans_dropped.labels(reason=reason).inc(count)
