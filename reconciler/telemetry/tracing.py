"""Traces: the SDK's provider and exporter when OTEL_* asks for them, and the spans of a pass.

Owns the tracer provider (built only when `settings.export_settings` says so:
otherwise no SDK object exists and spans are the API's no-op), its OTLP
exporter (http/protobuf or gRPC) behind a bounded BatchSpanProcessor that
counts what it drops, the flush at exit, and three ways to make spans: the
root span of a pass (`reconcile_span`), a child step (`step`), and spans
with explicit times rebuilt after the fact (`emit`).

Without an exporter a pass still gets a valid, random trace context (a
non-recording span), so the helper and history keep a trace id and log lines
carry it; nothing is recorded or sent.

Must not: know which steps a pass has (the controller names them) or read
helper journals (that is `helper_spans.py`).
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    INVALID_SPAN,
    NonRecordingSpan,
    Span,
    SpanContext,
    Status,
    StatusCode,
    TraceFlags,
)
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from reconciler import __version__
from reconciler.telemetry.settings import TelemetrySettingsError, export_settings

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger("pullnix.telemetry")

INSTRUMENTATION = "pullnix"
_PROPAGATOR = TraceContextTextMapPropagator()
_provider: TracerProvider | None = None


def init_tracing(host: str | None = None) -> None:
    """Install a provider and OTLP exporter if OTEL_* asks for one; otherwise do nothing.

    `host` (the machine's name in agent.toml) becomes the resource's `host.name`."""
    global _provider
    if _provider is not None:
        return
    try:
        settings = export_settings(os.environ)
    except TelemetrySettingsError as exc:
        log.warning("tracing is off: %s", exc)
        return
    if settings is None:
        return
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    from reconciler.telemetry.export import counting_processor, otlp_exporter

    detected = Resource.create()  # the SDK's own, then OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME
    resource = detected.merge(Resource(resource_attributes(detected.attributes, host)))
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    provider.add_span_processor(counting_processor(otlp_exporter(settings), settings))
    _provider = provider
    atexit.register(shutdown_tracing)
    log.info("tracing: exporting spans over OTLP %s", settings.protocol)


def resource_attributes(detected: Mapping[str, Any], host: str | None) -> dict[str, str]:
    """What pullnix adds to the resource the environment describes (OpenTelemetry's
    semantic conventions): `service.version` always, `service.name` `pullnix` unless
    OTEL_SERVICE_NAME or OTEL_RESOURCE_ATTRIBUTES names one, and `host.name` unless
    OTEL_RESOURCE_ATTRIBUTES names one."""
    ours = {"service.version": __version__}
    if str(detected.get("service.name", "")).startswith("unknown_service"):
        ours["service.name"] = "pullnix"
    if host and not detected.get("host.name"):
        ours["host.name"] = host
    return ours


def shutdown_tracing(timeout: float = 5.0) -> None:
    """Export what is queued and stop; wait at most `timeout` seconds, collector or not."""
    global _provider
    provider, _provider = _provider, None
    if provider is None:
        return

    def flush() -> None:
        provider.force_flush()
        provider.shutdown()

    worker = threading.Thread(target=flush, name="pullnix-trace-flush", daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        log.warning(
            "traces not flushed within %gs (is the collector down?); giving up on them", timeout
        )


@dataclass(frozen=True)
class PassTrace:
    """The root span of one pass, and the W3C traceparent that names it."""

    span: Span

    @property
    def context(self) -> SpanContext:
        return self.span.get_span_context()

    @property
    def trace_id(self) -> str:
        return format(self.context.trace_id, "032x")

    @property
    def traceparent(self) -> str:
        ctx = self.context
        return f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"

    def set(self, attributes: Mapping[str, Any]) -> None:
        set_attributes(self.span, attributes)

    def link(self, traceparent: str | None) -> None:
        """Point at another trace (a deploy this pass learnt the end of)."""
        ctx = span_context_of(traceparent)
        if ctx is not None:
            self.span.add_link(ctx)

    def fail(self, description: str) -> None:
        self.span.set_status(Status(StatusCode.ERROR, description))


@contextmanager
def reconcile_span(attributes: Mapping[str, Any]) -> Iterator[PassTrace]:
    """The root span `pullnix.reconcile`, current for the block; ended when it exits."""
    if _provider is None:
        span: Span = NonRecordingSpan(
            SpanContext(
                trace_id=int.from_bytes(secrets.token_bytes(16)) or 1,
                span_id=int.from_bytes(secrets.token_bytes(8)) or 1,
                is_remote=False,
                trace_flags=TraceFlags(TraceFlags.SAMPLED),
            )
        )
    else:
        span = _tracer().start_span(
            "pullnix.reconcile", context=Context(), attributes=_clean(attributes)
        )
    with trace.use_span(span, end_on_exit=True):
        yield PassTrace(span)


@contextmanager
def step(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Span]:
    """A child span of the current one; an exception marks it Error with its reason."""
    if _provider is None:
        yield INVALID_SPAN
        return
    with _tracer().start_as_current_span(
        name,
        attributes=_clean(attributes or {}),
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield span
        except Exception as exc:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, describe(exc)))
            raise


@dataclass(frozen=True)
class TimedSpan:
    """A span that already happened: what `emit` records."""

    name: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    error: str | None = None  # the status description when it failed
    events: Sequence[tuple[str, int, Mapping[str, Any]]] = ()


def emit(spans: Sequence[TimedSpan], traceparent: str | None) -> None:
    """Record spans with their own start and end times as children of `traceparent`
    (the current span's trace when it names none)."""
    if _provider is None or not spans:
        return
    parent = span_context_of(traceparent)
    ctx = trace.set_span_in_context(NonRecordingSpan(parent)) if parent is not None else None
    tracer = _tracer()
    for timed in spans:
        span = tracer.start_span(
            timed.name, context=ctx, start_time=timed.start_ns, attributes=_clean(timed.attributes)
        )
        for name, at, attrs in timed.events:
            span.add_event(name, attributes=_clean(attrs), timestamp=at)
        if timed.error is not None:
            span.set_status(Status(StatusCode.ERROR, timed.error))
        span.end(end_time=max(timed.end_ns, timed.start_ns))


def span_context_of(traceparent: str | None) -> SpanContext | None:
    """The remote span context a W3C traceparent names, or None if it names none."""
    if not traceparent:
        return None
    ctx = trace.get_current_span(_PROPAGATOR.extract({"traceparent": traceparent}))
    span_context = ctx.get_span_context()
    return span_context if span_context.is_valid else None


def set_attributes(span: Span, attributes: Mapping[str, Any]) -> None:
    clean = _clean(attributes)
    if clean:
        span.set_attributes(clean)


def describe(exc: BaseException) -> str:
    reason = getattr(exc, "reason", None)
    message = getattr(exc, "message", None) or str(exc)
    return f"{reason}: {message}" if reason else f"{type(exc).__name__}: {message}"


def _tracer() -> trace.Tracer:
    assert _provider is not None
    return _provider.get_tracer(INSTRUMENTATION, __version__)


def _clean(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes OTel accepts: drop None, keep str/bool/int/float."""
    return {
        k: v
        for k, v in attributes.items()
        if v is not None and isinstance(v, str | bool | int | float)
    }
