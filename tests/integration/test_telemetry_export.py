"""What trace export costs a pass when the collector is down or hung.

The span trees themselves are asserted in a real Jaeger
(test_jaeger_traces.py). These show what Jaeger cannot: a collector that is
down neither fails nor holds up a pass (the agent is a subprocess, the
collector a loopback port nothing listens on), and every span a collector that
accepts connections and never answers does not get is counted once, as
`pullnix_trace_spans_dropped_total` says (the agent's processor and real
exporter, in this process).
"""

from __future__ import annotations

import socket

import pytest
from opentelemetry.sdk.trace import TracerProvider

from reconciler.telemetry import metrics
from reconciler.telemetry.export import counting_processor, otlp_exporter
from reconciler.telemetry.settings import export_settings
from tests.support.agentmachine import Machine, agent_env
from tests.support.otlp import closed_port

pytestmark = [pytest.mark.nix, pytest.mark.slow]


@pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
def test_a_collector_that_is_down_or_hung_neither_fails_nor_holds_up_a_pass(
    machine: Machine, protocol: str
) -> None:
    """No timing: a collector that refuses connections, then one that takes them and
    never answers while the exporter would wait for an hour; each `reconcile --once`
    still succeeds, well inside the CLI helper's deadline, and says it gave up on them."""
    down = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{closed_port()}",
        "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
    }
    done = machine.reconcile(agent_env(down))
    assert done.returncode == 0, done.stderr
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel accepts; nobody reads or answers
        stuck = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hung.getsockname()[1]}",
            "OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
            "OTEL_EXPORTER_OTLP_TIMEOUT": "3600000",  # an hour even if read as milliseconds
            "OTEL_BSP_SCHEDULE_DELAY": "50",
        }
        done = machine.reconcile(agent_env(stuck))  # raises TimeoutExpired if it waited
    assert done.returncode == 0, done.stderr
    assert "traces not flushed within" in done.stderr


def dropped(reason: str) -> float:
    return (
        metrics.registry().get_sample_value("pullnix_trace_spans_dropped_total", {"reason": reason})
        or 0.0
    )


def test_every_span_a_hung_collector_never_gets_is_counted_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The agent's processor and real exporter, in this process, against a collector that
    takes connections and never answers, then goes away; the queue holds 4
    (OTEL_BSP_MAX_QUEUE_SIZE alone, below the SDK's export batch size of 512)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)  # the kernel accepts; nobody reads or answers
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{hung.getsockname()[1]}",
            "OTEL_BSP_MAX_QUEUE_SIZE": "4",
        }
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        settings = export_settings(env)
        assert settings is not None
        assert (settings.max_queue_size, settings.max_export_batch_size) == (4, 4)
        provider = TracerProvider(shutdown_on_exit=False)
        provider.add_span_processor(counting_processor(otlp_exporter(settings), settings))
        before = {reason: dropped(reason) for reason in ("queue_full", "export_failed")}
        tracer = provider.get_tracer("test")
        for n in range(20):
            tracer.start_span(f"span-{n}").end()
        # no export can have finished: at most a batch in flight and a full queue
        assert dropped("queue_full") - before["queue_full"] >= 20 - 4 - 4
    provider.shutdown()  # the collector is gone now: what is queued fails too
    full = dropped("queue_full") - before["queue_full"]
    failed = dropped("export_failed") - before["export_failed"]
    assert full + failed == 20
    assert failed >= 4
