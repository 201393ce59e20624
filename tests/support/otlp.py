"""Real OTLP trace receivers for tests: HTTP (protobuf) and gRPC, on 127.0.0.1.

Owns the test side of the OTLP wire: an `http.server` answering POST
/v1/traces and a grpcio server implementing TraceService/Export, both
decoding `ExportTraceServiceRequest` (opentelemetry-proto) into plain
`ReceivedSpan` values the tests assert on. Must not: mock an exporter; the
agent's real SDK exporter talks to these over real sockets.

- `HttpReceiver()` / `GrpcReceiver()`: `.start()`, `.stop()`, `.endpoint`
  (base URL for OTEL_EXPORTER_OTLP_ENDPOINT), `.spans()`, `.wait_for(pred)`;
  both are context managers.
- `closed_port()`: a loopback port nothing listens on (a collector that is down).
"""

from __future__ import annotations

import gzip
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2


@dataclass(frozen=True)
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    start_ns: int
    end_ns: int
    attributes: Mapping[str, Any]
    status_code: int
    status_message: str
    events: tuple[tuple[str, int, Mapping[str, Any]], ...] = ()
    links: tuple[tuple[str, str], ...] = ()  # (trace id, span id)
    resource: Mapping[str, Any] = field(default_factory=dict)


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return _attrs(v.kvlist_value.values)
    return getattr(v, kind)


def _attrs(kvs: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


def decode(request: trace_service_pb2.ExportTraceServiceRequest) -> list[ReceivedSpan]:
    out: list[ReceivedSpan] = []
    for rs in request.resource_spans:
        resource = _attrs(rs.resource.attributes)
        for ss in rs.scope_spans:
            for s in ss.spans:
                out.append(
                    ReceivedSpan(
                        name=s.name,
                        trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(),
                        parent_span_id=s.parent_span_id.hex(),
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        attributes=_attrs(s.attributes),
                        status_code=s.status.code,
                        status_message=s.status.message,
                        events=tuple(
                            (e.name, e.time_unix_nano, _attrs(e.attributes)) for e in s.events
                        ),
                        links=tuple((lk.trace_id.hex(), lk.span_id.hex()) for lk in s.links),
                        resource=resource,
                    )
                )
    return out


class _Collected:
    def __init__(self) -> None:
        self._spans: list[ReceivedSpan] = []
        self._cond = threading.Condition()
        self.requests = 0

    def add(self, spans: list[ReceivedSpan]) -> None:
        with self._cond:
            self.requests += 1
            self._spans.extend(spans)
            self._cond.notify_all()

    def spans(self) -> list[ReceivedSpan]:
        with self._cond:
            return list(self._spans)

    def wait_for(
        self, pred: Callable[[list[ReceivedSpan]], bool], timeout: float = 30.0
    ) -> list[ReceivedSpan]:
        """Wait until `pred(all spans so far)` holds; AssertionError after `timeout`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not pred(list(self._spans)):
                left = deadline - time.monotonic()
                if left <= 0:
                    names = sorted({s.name for s in self._spans})
                    raise AssertionError(
                        f"the receiver did not get the spans expected within "
                        f"{timeout}s; it has {len(self._spans)}: {names}"
                    )
                self._cond.wait(left)
            return list(self._spans)


class HttpReceiver(_Collected):
    """OTLP/HTTP with protobuf bodies: POST /v1/traces."""

    def __init__(self) -> None:
        super().__init__()
        collected = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                encoding = self.headers.get("Content-Encoding", "")
                if encoding == "gzip":
                    body = gzip.decompress(body)
                elif encoding == "deflate":
                    body = zlib.decompress(body)
                if (
                    self.path != "/v1/traces"
                    or self.headers.get("Content-Type") != "application/x-protobuf"
                ):
                    self.send_error(404 if self.path != "/v1/traces" else 415)
                    return
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                collected.add(decode(request))
                answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HttpReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class GrpcReceiver(_Collected):
    """OTLP/gRPC: opentelemetry.proto.collector.trace.v1.TraceService/Export."""

    def __init__(self) -> None:
        super().__init__()
        collected = self

        class Service(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, _context: Any) -> Any:
                collected.add(decode(request))
                return trace_service_pb2.ExportTraceServiceResponse()

        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Service(), self._server)
        self._port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> GrpcReceiver:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def __enter__(self) -> GrpcReceiver:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def closed_port() -> int:
    """A loopback TCP port with nothing listening (bound, then closed again)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def by_name(spans: Iterable[ReceivedSpan], name: str) -> list[ReceivedSpan]:
    return [s for s in spans if s.name == name]


def children(spans: Iterable[ReceivedSpan], parent: ReceivedSpan) -> list[ReceivedSpan]:
    return sorted(
        (s for s in spans if s.trace_id == parent.trace_id and s.parent_span_id == parent.span_id),
        key=lambda s: s.start_ns,
    )
