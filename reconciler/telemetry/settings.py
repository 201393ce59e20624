"""What the standard OTEL_* variables ask of trace export, as a value.

Owns reading the environment into an ExportSettings (or None: no export, and
then no SDK at all). Pure: takes a mapping, returns a value; the SDK reads
the finer variables (endpoint paths, headers, certificates, sampler,
resource attributes, OTEL_BSP_*) itself when the exporter is built.

Must not: build exporters or providers (that is `tracing.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

PROTOCOLS = ("http/protobuf", "grpc")

#: Seconds one export may take, retries included, unless OTEL_EXPORTER_OTLP_*TIMEOUT says.
#: Short on purpose: a collector that is down must not hold up the flush at exit.
DEFAULT_EXPORT_TIMEOUT = 2.0

#: OTEL_BSP_MAX_QUEUE_SIZE's default in the SDK: spans waiting beyond this are dropped.
DEFAULT_MAX_QUEUE_SIZE = 2048

#: OTEL_BSP_MAX_EXPORT_BATCH_SIZE's default in the SDK.
DEFAULT_MAX_EXPORT_BATCH_SIZE = 512


class TelemetrySettingsError(ValueError):
    """An OTEL_* variable this agent cannot honour; the message says which and why."""


@dataclass(frozen=True)
class ExportSettings:
    protocol: str  # one of PROTOCOLS
    timeout: float | None  # None: the SDK reads OTEL_EXPORTER_OTLP_*TIMEOUT itself
    max_queue_size: int
    #: never more than max_queue_size: the SDK refuses a batch bigger than its queue, and
    #: OTEL_BSP_MAX_QUEUE_SIZE alone (say 100) must not stop tracing, let alone a pass
    max_export_batch_size: int = DEFAULT_MAX_EXPORT_BATCH_SIZE


def export_settings(env: Mapping[str, str]) -> ExportSettings | None:
    """The export the environment asks for, or None when it asks for none.

    Export is on when OTEL_EXPORTER_OTLP_ENDPOINT or
    OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set, or OTEL_TRACES_EXPORTER is
    `otlp` (the SDK then uses its default endpoint). OTEL_SDK_DISABLED=true
    or OTEL_TRACES_EXPORTER=none turns it off whatever else is set.
    """
    if _get(env, "OTEL_SDK_DISABLED").lower() == "true":
        return None
    exporters = [e.strip() for e in _get(env, "OTEL_TRACES_EXPORTER").split(",") if e.strip()]
    if exporters:
        if exporters == ["none"]:
            return None
        unknown = [e for e in exporters if e != "otlp"]
        if unknown:
            raise TelemetrySettingsError(
                f"OTEL_TRACES_EXPORTER={_get(env, 'OTEL_TRACES_EXPORTER')!r}: pullnix exports "
                "traces with `otlp` only (or `none`)"
            )
    elif not (
        _get(env, "OTEL_EXPORTER_OTLP_ENDPOINT") or _get(env, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return None
    protocol = (
        _get(env, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        or _get(env, "OTEL_EXPORTER_OTLP_PROTOCOL")
        or "http/protobuf"
    )
    if protocol not in PROTOCOLS:
        raise TelemetrySettingsError(
            f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: use one of {', '.join(PROTOCOLS)}"
        )
    explicit = _get(env, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT") or _get(
        env, "OTEL_EXPORTER_OTLP_TIMEOUT"
    )
    queue = _positive_int(env, "OTEL_BSP_MAX_QUEUE_SIZE", DEFAULT_MAX_QUEUE_SIZE)
    batch = _positive_int(env, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", DEFAULT_MAX_EXPORT_BATCH_SIZE)
    return ExportSettings(
        protocol=protocol,
        timeout=None if explicit else DEFAULT_EXPORT_TIMEOUT,
        max_queue_size=queue,
        max_export_batch_size=min(batch, queue),
    )


def _get(env: Mapping[str, str], key: str) -> str:
    return env.get(key, "").strip()


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    raw = _get(env, key)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise TelemetrySettingsError(f"{key}={raw!r}: not a whole number") from None
    if value <= 0:
        raise TelemetrySettingsError(f"{key}={raw!r}: must be positive")
    return value
