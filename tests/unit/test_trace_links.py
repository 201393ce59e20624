"""Trace links (reconciler/common/tracelinks.py, `[telemetry] trace_url`) and what the
agent adds to its traces' resource and helper spans, as tables of values."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler import __version__
from reconciler.common.config import ConfigError, parse_machine_config
from reconciler.common.operation import CheckResult, Operation, Phase, Previous, State, Transition
from reconciler.common.protocol import ApplyRequest
from reconciler.common.tracelinks import jaeger_template, jaeger_ui_of, trace_link
from reconciler.telemetry.helper_spans import operation_spans
from reconciler.telemetry.tracing import resource_attributes

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"


@pytest.mark.parametrize(
    ("template", "trace_id", "link"),
    [
        ("http://j:16686/trace/{traceId}", TRACE, f"http://j:16686/trace/{TRACE}"),
        (
            "https://grafana.example.org/explore?traceId={traceId}&ds=tempo",
            TRACE,
            f"https://grafana.example.org/explore?traceId={TRACE}&ds=tempo",
        ),
        ("", TRACE, None),  # no template configured
        ("http://j:16686/trace/{traceId}", None, None),  # an entry without a trace
        ("http://j:16686/trace/{traceId}", "", None),
    ],
)
def test_a_template_and_a_trace_id_make_a_link(
    template: str, trace_id: str | None, link: str | None
) -> None:
    assert trace_link(template, trace_id) == link


@pytest.mark.parametrize(
    ("ui", "template"),
    [
        ("http://127.0.0.1:16686", "http://127.0.0.1:16686/trace/{traceId}"),
        ("http://jaeger.example.org:16686/", "http://jaeger.example.org:16686/trace/{traceId}"),
        ("https://ops.example.org/jaeger", "https://ops.example.org/jaeger/trace/{traceId}"),
        ("https://tempo.example.org/t/{traceId}", "https://tempo.example.org/t/{traceId}"),
    ],
)
def test_a_jaeger_ui_base_url_becomes_its_trace_template(ui: str, template: str) -> None:
    assert jaeger_template(ui) == template


@pytest.mark.parametrize(
    ("endpoint", "ui"),
    [
        ("http://127.0.0.1:4318", "http://127.0.0.1:16686"),
        ("https://collector.example.org:4318/", "http://collector.example.org:16686"),
        ("http://jaeger:4318/v1/traces", "http://jaeger:16686"),
        ("grpc://jaeger.example.org:4317", "http://jaeger.example.org:16686"),
        ("jaeger.example.org:4317", "http://jaeger.example.org:16686"),  # gRPC without scheme
        ("http://[::1]:4318", "http://[::1]:16686"),
        ("", None),
        ("http://", None),
        ("http://[::1:4318", None),  # not a URL
    ],
)
def test_the_jaeger_ui_beside_an_otlp_endpoint(endpoint: str, ui: str | None) -> None:
    assert jaeger_ui_of(endpoint) == ui


def test_trace_url_is_read_from_the_telemetry_section() -> None:
    template = "http://jaeger.example.org:16686/trace/{traceId}"
    config = parse_machine_config({"host": "h", "telemetry": {"trace_url": template}})
    assert config.telemetry.trace_url == template
    assert parse_machine_config({"host": "h"}).telemetry.trace_url == ""


@pytest.mark.parametrize(
    "bad",
    [
        "http://jaeger.example.org:16686/trace/",  # nowhere for the id
        "http://jaeger.example.org:16686/trace/{traceid}",  # wrong case
        "jaeger.example.org:16686/trace/{traceId}",  # not a URL
        "file:///tmp/{traceId}",
    ],
)
def test_a_trace_url_without_its_placeholder_or_not_http_is_refused(bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_machine_config({"host": "h", "telemetry": {"trace_url": bad}}, origin="a.toml")
    assert str(caught.value).startswith("a.toml: telemetry.trace_url: ")
    assert "{traceId}" in str(caught.value)


@pytest.mark.parametrize(
    ("detected", "host", "added"),
    [
        # nothing set: pullnix names the service and the host
        (
            {"service.name": "unknown_service", "telemetry.sdk.name": "opentelemetry"},
            "edge-01",
            {"service.name": "pullnix", "service.version": __version__, "host.name": "edge-01"},
        ),
        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win; the version is always ours
        (
            {"service.name": "fleet-agent", "host.name": "edge-01.example.org"},
            "edge-01",
            {"service.version": __version__},
        ),
        (
            {"service.name": "unknown_service:python3"},
            None,
            {"service.name": "pullnix", "service.version": __version__},
        ),
    ],
)
def test_the_resource_follows_the_semantic_conventions(
    detected: dict[str, Any], host: str | None, added: dict[str, str]
) -> None:
    assert resource_attributes(detected, host) == added


def _operation(state: str, message: str) -> Operation:
    t = "2026-01-01T00:00:0{}+00:00".format
    rolled_back = state == "RolledBack"
    return Operation(
        id="op1",
        kind="apply",
        request=ApplyRequest(
            store_path="/nix/store/x-nixos-system",
            revision="a" * 40,
            traceparent=f"00-{TRACE}-00f067aa0ba902b7-01",
        ),
        previous=Previous("/nix/store/y-nixos-system", None, None),
        state=State(state),
        created_at=t(0),
        message=message,
        finished_at=t(6),
        transitions=(
            Transition(State.ACTIVATING, t(1)),
            Transition(State.VERIFYING, t(2)),
            Transition(
                State.ROLLING_BACK if rolled_back else State.COMMITTING,
                t(3),
                "health check app failed: exit 1" if rolled_back else "",
            ),
            Transition(State(state), t(5), message),
        ),
        phases=(
            Phase("activate", t(1), t(2), True),
            Phase("check:app", t(2), t(3), not rolled_back, "exit 1"),
        ),
        checks=(CheckResult("app", "command", not rolled_back, "exit 1", 1, t(2), t(3)),),
    )


def test_a_rollback_span_carries_its_reason_and_result_and_fails() -> None:
    spans = operation_spans(_operation("RolledBack", "rolled back: health check app failed"))
    rollback = next(s for s in spans if s.name == "helper.rollback")
    assert rollback.attributes["pullnix.rollback.reason"] == "health check app failed: exit 1"
    assert rollback.attributes["pullnix.result"] == "RolledBack"
    assert rollback.attributes["pullnix.revision"] == "a" * 40
    assert rollback.error == "rolled back: health check app failed"


def test_a_commit_span_carries_the_result_and_no_rollback_reason() -> None:
    spans = operation_spans(_operation("Succeeded", "committed generation 2"))
    commit = next(s for s in spans if s.name == "helper.commit")
    assert commit.attributes["pullnix.result"] == "Succeeded"
    assert "pullnix.rollback.reason" not in commit.attributes
    assert commit.error is None
    assert {s.attributes["pullnix.revision"] for s in spans} == {"a" * 40}
