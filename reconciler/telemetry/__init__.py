"""Telemetry: traces, metrics, structured logs and sd_notify for the agent.

Owns everything the agent tells the outside world about itself, as opposed
to the state it keeps: OpenTelemetry traces exported over OTLP (configured by
the standard OTEL_* variables only; with none set, no SDK is loaded and no
span is recorded), Prometheus metrics on `[telemetry] metrics_listen`, one
structured log line per event carrying the trace id, and sd_notify. The
helper imports no SDK: its spans are rebuilt here from its timed journal
(`helper_spans`). It also exports the host's fleet state, labelled `host` and
`wave` (`fleet_metrics`), and reads the fleet's back from Prometheus's HTTP API
for the wave gate and `pullnix fleet` (`fleet_query`).

Must not: decide, reconcile or act. It sits below the controller and above
the source and Nix shells; it never imports the controller or the CLI.

The seam the controller and CLI call is the names below.
"""

from __future__ import annotations

from reconciler.telemetry.logs import configure_logging
from reconciler.telemetry.metrics import (
    observe_pass,
    start_metrics_server,
    stop_metrics_servers,
)
from reconciler.telemetry.metrics import parse_listen as parse_metrics_listen
from reconciler.telemetry.sdnotify import (
    notify_ready,
    notify_status,
    notify_stopping,
    notify_watchdog,
    watchdog_interval,
)
from reconciler.telemetry.tracing import init_tracing, shutdown_tracing

__all__ = [
    "configure_logging",
    "init_tracing",
    "notify_ready",
    "notify_status",
    "notify_stopping",
    "notify_watchdog",
    "observe_pass",
    "parse_metrics_listen",
    "shutdown_tracing",
    "start_metrics_server",
    "stop_metrics_servers",
    "watchdog_interval",
]
