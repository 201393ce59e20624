"""The OTLP exporter and the batch processor in front of it, counting what never arrives.

Owns building the exporter the settings name (http/protobuf or gRPC; the SDK
reads endpoint, headers, certificates and compression from OTEL_* itself)
and the bounded BatchSpanProcessor around it. Spans are dropped, never
waited for: when the queue is full (`reason="queue_full"`) or an export fails
(`reason="export_failed"`, e.g. the collector is down), and both are counted
in `pullnix_trace_spans_dropped_total`.

Must not: block a pass. Exports happen on the processor's thread; one export
is bounded by the exporter's timeout.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from reconciler.telemetry import metrics
from reconciler.telemetry.settings import DEFAULT_MAX_EXPORT_BATCH_SIZE, ExportSettings


def otlp_exporter(settings: ExportSettings) -> SpanExporter:
    if settings.protocol == "grpc":
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
            OTLPSpanExporter as GrpcExporter,
        )

        return GrpcExporter(timeout=settings.timeout)
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
        OTLPSpanExporter as HttpExporter,
    )

    return HttpExporter(timeout=settings.timeout)


class CountingProcessor(BatchSpanProcessor):
    """A BatchSpanProcessor that knows how many spans wait in its queue, to count drops.

    A span is waiting from `on_end` until the exporter is handed its batch, so
    the count is never below the SDK queue's length. A span that finds the
    count at the bound is dropped (the newest, not the oldest the SDK would
    evict) and counted; so every span is counted exactly once when none arrives.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        max_queue_size: int,
        max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE,
    ) -> None:
        self._max = max_queue_size
        self._waiting = 0
        self._lock = threading.Lock()
        super().__init__(
            _CountingExporter(exporter, self._handed),
            max_queue_size=max_queue_size,
            max_export_batch_size=min(max_export_batch_size, max_queue_size),
        )

    def on_end(self, span: ReadableSpan) -> None:
        if span.context is None or not span.context.trace_flags.sampled:
            return
        with self._lock:
            full = self._waiting >= self._max
            if not full:
                self._waiting += 1
        if full:  # dropped here, so the SDK's queue never overflows and evicts uncounted
            metrics.record_spans_dropped(1, "queue_full")
            return
        super().on_end(span)

    def _handed(self, count: int) -> None:
        with self._lock:
            self._waiting = max(0, self._waiting - count)


class _CountingExporter(SpanExporter):
    def __init__(self, inner: SpanExporter, handed: Callable[[int], None]) -> None:
        self._inner = inner
        self._handed = handed

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self._handed(len(spans))
        try:
            result = self._inner.export(spans)
        except Exception:
            metrics.record_spans_dropped(len(spans), "export_failed")
            raise
        if result is not SpanExportResult.SUCCESS:
            metrics.record_spans_dropped(len(spans), "export_failed")
        return result

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def counting_processor(exporter: SpanExporter, settings: ExportSettings) -> CountingProcessor:
    return CountingProcessor(exporter, settings.max_queue_size, settings.max_export_batch_size)
