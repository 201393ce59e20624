"""Links to a trace in a tracing UI: the `[telemetry] trace_url` template, and Jaeger's UI.

Owns turning a template with `{traceId}` (Jaeger, Tempo, Grafana: any UI that
opens a trace by its id in the URL) and a W3C trace id into a link, and guessing
the Jaeger UI that sits beside an OTLP endpoint (same host, its default port
16686), for `pullnix demo`. Pure and standard library only: strings in,
strings out.

Must not: check that the UI answers, or read the environment (the callers do).
"""

from __future__ import annotations

from urllib.parse import urlsplit

#: Where a trace link template (`[telemetry] trace_url`) puts the trace id.
TRACE_ID_PLACEHOLDER = "{traceId}"

#: The Jaeger UI's (and query API's) default HTTP port.
JAEGER_UI_PORT = 16686


def trace_link(template: str, trace_id: str | None) -> str | None:
    """The link to `trace_id` that `template` makes, or None without either."""
    if not template or not trace_id:
        return None
    return template.replace(TRACE_ID_PLACEHOLDER, trace_id)


def jaeger_template(ui: str) -> str:
    """The trace_url template for the Jaeger UI at `ui` (`http://host:16686` gives
    `http://host:16686/trace/{traceId}`); a template already is one and is kept."""
    if TRACE_ID_PLACEHOLDER in ui:
        return ui
    return f"{ui.rstrip('/')}/trace/{TRACE_ID_PLACEHOLDER}"


def jaeger_ui_of(endpoint: str) -> str | None:
    """Jaeger's UI beside the OTLP `endpoint` (`http://h:4318`, `grpc://h:4317`, `h:4317`):
    `http://h:16686`, or None when the endpoint names no host."""
    text = endpoint.strip()
    try:
        host = urlsplit(text if "://" in text else f"//{text}").hostname
    except ValueError:
        return None
    if not host:
        return None
    if ":" in host:  # an IPv6 literal
        host = f"[{host}]"
    return f"http://{host}:{JAEGER_UI_PORT}"
