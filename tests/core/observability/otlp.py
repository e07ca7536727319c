"""Loopback test servers: an OTLP/HTTP trace receiver and a fake provider that records headers.

The worker process exports its spans over real OTLP/HTTP (protobuf) to `OtlpReceiver`,
which decodes them with the OTLP protobuf definitions, so a test can join them with the
spans the test process kept in memory.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ExportedSpan:
    """The parts of an exported span a connectivity test needs."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    service: str


@dataclass
class LoopbackServer:
    """An HTTP server on 127.0.0.1 in a thread, with what it received."""

    server: ThreadingHTTPServer
    received: list[Any]

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://{LOOPBACK}:{self.server.server_address[1]}"


def _decode(body: bytes) -> list[ExportedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        service = next(
            (
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            ),
            "",
        )
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ExportedSpan(
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_span_id=span.parent_span_id.hex(),
                        service=service,
                    )
                )
    return spans


@contextlib.contextmanager
def _serve(handler: type[BaseHTTPRequestHandler], received: list[Any]) -> Iterator[LoopbackServer]:
    server = ThreadingHTTPServer((LOOPBACK, 0), handler)
    server.received = received  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LoopbackServer(server, received)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


class _OtlpHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        self.server.received.extend(_decode(body))  # type: ignore[attr-defined]
        payload = ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *_: Any) -> None:
        return


class _ProviderHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.received.append(dict(self.headers.items()))  # type: ignore[attr-defined]
        payload = json.dumps({"output": "hi"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST

    def log_message(self, *_: Any) -> None:
        return


def otlp_receiver() -> contextlib.AbstractContextManager[LoopbackServer]:
    """Receive OTLP/HTTP protobuf trace exports on loopback."""
    return _serve(_OtlpHandler, [])


def fake_provider() -> contextlib.AbstractContextManager[LoopbackServer]:
    """Answer every request with a small JSON body and record its headers."""
    return _serve(_ProviderHandler, [])
