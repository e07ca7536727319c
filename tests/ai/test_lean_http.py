"""The lean HTTP/1.1 path of non-streamed provider calls (app/ai/http11.py).

Against real servers on loopback: the provider simulator, and a raw socket server that
answers each request with bytes a test chooses (chunked, gzip, cut, silent, closing), so
every shape the lean reader handles, and each failure it maps, is seen on the wire.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from app.ai.errors import FailureKind, ProviderFailure
from app.ai.providers import build_provider
from app.ai.transport import GuardedBackend, GuardedTransport
from app.ai.types import ChatRequest, Message
from app.core.specs import AIProviderSpec
from tests.ai.support import Sim, provider_spec

COMPLETION = {
    "id": "c1", "object": "chat.completion", "model": "sim-small",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello there"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
}  # fmt: skip
BODY = json.dumps(COMPLETION).encode()


def request() -> ChatRequest:
    return ChatRequest(model="sim-small", messages=(Message("user", "hi"),), max_tokens=8)


def provider_at(port: int, *, timeout: int = 10, key: str = "sk-lean") -> Any:
    spec = {
        "type": "OpenAICompatible", "baseURL": f"http://127.0.0.1:{port}/v1",
        "models": [{"name": "sim-small"}], "maxRetries": 0, "timeoutSeconds": timeout,
    }  # fmt: skip
    transport = GuardedTransport(
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=4),
        backend=GuardedBackend(resolve=lambda *_: ["127.0.0.1"]),
    )
    return build_provider(
        name="p", spec=AIProviderSpec.model_validate(spec), api_key=key, transport=transport,
        connect_timeout=2, allowed_http_hosts=["127.0.0.1"],
    )  # fmt: skip


class RawServer:
    """Accepts connections; `answer(request_bytes)` gives the bytes to send back, and
    whether to close the connection after them (None: send nothing, hold it open)."""

    def __init__(self, answer: Callable[[bytes], tuple[bytes, bool] | None]) -> None:
        self.answer = answer
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.requests: list[bytes] = []
        self.connections = 0
        self._open: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self._open.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        # close() shuts the connections under this thread: that is the way it ends.
        with contextlib.suppress(OSError):
            self._exchange(conn)

    def _exchange(self, conn: socket.socket) -> None:
        buffer = b""
        with conn:
            while True:
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, rest = buffer.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(rest) < length:
                    rest += conn.recv(65536)
                self.requests.append(head + b"\r\n\r\n" + rest[:length])
                buffer = rest[length:]
                reply = self.answer(self.requests[-1])
                if reply is None:
                    threading.Event().wait(10)
                    return
                payload, close = reply
                conn.sendall(payload)
                if close:
                    return

    def close(self) -> None:
        self.sock.close()
        for conn in self._open:
            conn.close()


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[bytes], tuple[bytes, bool] | None]], RawServer]]:
    servers: list[RawServer] = []

    def start(answer: Callable[[bytes], tuple[bytes, bool] | None]) -> RawServer:
        servers.append(RawServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def ok(body: bytes = BODY, extra: bytes = b"") -> bytes:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n"
    return head % (extra, len(body)) + body


def test_calls_to_the_simulator_reuse_one_connection_and_send_one_well_formed_request(
    sim: Sim,
) -> None:
    provider = provider_via_sim(sim)
    texts = [provider.complete(request(), timeout=5).text for _ in range(5)]

    assert all(texts) and provider.transport.lean.opened == 1
    seen = sim.requests()[-5:]
    assert [r["model"] for r in seen] == ["sim-small"] * 5 and not any(r["stream"] for r in seen)


def provider_via_sim(sim: Sim) -> Any:
    transport = GuardedTransport(limits=httpx.Limits(max_connections=4))
    return build_provider(
        name="p", spec=AIProviderSpec.model_validate(provider_spec(sim)), api_key="sk-lean",
        transport=transport, connect_timeout=2, allowed_http_hosts=["127.0.0.1"],
    )  # fmt: skip


def test_the_request_is_one_post_with_host_length_and_the_key(raw: Any) -> None:
    server = raw(lambda _: (ok(), False))
    provider = provider_at(server.port)

    completion = provider.complete(request(), timeout=5)

    assert completion.text == "hello there" and completion.usage.total == 5
    head, _, body = server.requests[0].partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat/completions HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"Authorization: Bearer sk-lean" in lines
    assert f"Content-Length: {len(body)}".encode() in lines
    assert json.loads(body)["model"] == "sim-small"


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (BODY[:10], BODY[10:]))
            + b"0\r\nX-Trailer: 1\r\n\r\n",
            id="chunked",
        ),
        pytest.param(ok(gzip.compress(BODY), b"Content-Encoding: gzip\r\n"), id="gzip"),
        pytest.param(b"HTTP/1.1 100 Continue\r\n\r\n" + ok(), id="interim-100"),
    ],
)
def test_bodies_in_every_framing_are_read_whole(raw: Any, reply: bytes) -> None:
    server = raw(lambda _: (reply, False))
    provider = provider_at(server.port)

    assert provider.complete(request(), timeout=5).text == "hello there"
    assert provider.complete(request(), timeout=5).text == "hello there"
    assert server.connections == 1  # each framing leaves the connection reusable


def test_a_body_ended_by_closing_the_connection_is_read_and_the_connection_not_reused(
    raw: Any,
) -> None:
    server = raw(lambda _: (b"HTTP/1.1 200 OK\r\n\r\n" + BODY, True))
    provider = provider_at(server.port)

    for _ in range(2):
        assert provider.complete(request(), timeout=5).text == "hello there"
    assert server.connections == 2


def test_connection_close_and_a_peer_that_closed_while_idle_mean_a_new_connection(
    raw: Any,
) -> None:
    server = raw(lambda _: (ok(extra=b"Connection: close\r\n"), True))
    provider = provider_at(server.port)

    for _ in range(3):
        assert provider.complete(request(), timeout=5).text == "hello there"
    assert server.connections == 3 and provider.transport.lean.opened == 3


def test_a_pooled_connection_the_peer_closed_while_idle_is_never_reused(raw: Any) -> None:
    server = raw(lambda _: (ok(), True))  # keep-alive answer, then the server hangs up
    provider = provider_at(server.port)

    for _ in range(3):
        assert provider.complete(request(), timeout=5).text == "hello there"
        time.sleep(0.05)  # the FIN arrives while the connection sits in the pool
    assert server.connections == 3 and len(server.requests) == 3


def test_statuses_keep_their_meaning_and_retry_after(raw: Any) -> None:
    replies = iter([
        b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 7\r\nContent-Length: 2\r\n\r\n{}",
        b"HTTP/1.1 503 Unavailable\r\nContent-Length: 0\r\n\r\n",
        b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n",
        ok(b"not json"),
    ])  # fmt: skip
    server = raw(lambda _: (next(replies), False))
    provider = provider_at(server.port)
    kinds = []
    for _ in range(4):
        with pytest.raises(ProviderFailure) as caught:
            provider.complete(request(), timeout=5)
        kinds.append((caught.value.kind, caught.value.status, caught.value.retry_after))

    assert kinds == [
        (FailureKind.RATE_LIMITED, 429, 7.0),
        (FailureKind.SERVER_ERROR, 503, None),
        (FailureKind.AUTH, 401, None),
        (FailureKind.BAD_RESPONSE, None, None),
    ]
    assert server.connections == 1


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        pytest.param((ok()[:-20], True), FailureKind.TRUNCATED, id="cut-body"),
        pytest.param((b"", True), FailureKind.TRUNCATED, id="closed-before-answer"),
        pytest.param((b"NOT HTTP\r\n\r\n", True), FailureKind.TRUNCATED, id="garbage"),
        pytest.param(None, FailureKind.TIMEOUT, id="silent"),
    ],
)
def test_transport_faults_map_as_on_the_httpx_path(
    raw: Any, reply: tuple[bytes, bool] | None, kind: FailureKind
) -> None:
    server = raw(lambda _: reply)
    provider = provider_at(server.port, timeout=1)

    with pytest.raises(ProviderFailure) as caught:
        provider.complete(request(), timeout=1)

    assert caught.value.kind is kind and caught.value.retryable
    assert len(server.requests) == 1  # never sent twice


def test_a_refused_port_is_a_connect_failure() -> None:
    with socket.create_server(("127.0.0.1", 0)) as held:
        port = held.getsockname()[1]
    with pytest.raises(ProviderFailure) as caught:
        provider_at(port).complete(request(), timeout=2)
    assert caught.value.kind is FailureKind.CONNECT


def test_a_key_that_could_split_the_request_never_takes_the_lean_path(raw: Any) -> None:
    server = raw(lambda _: (ok(), False))
    provider = provider_at(server.port, key="sk-a\r\nX-Injected: 1")

    with pytest.raises(ProviderFailure):
        provider.complete(request(), timeout=2)  # httpx refuses the header, as before

    assert server.requests == [] and provider.transport.lean.opened == 0


def test_with_httpx_instrumented_calls_take_httpx_and_carry_traceparent(raw: Any) -> None:
    from opentelemetry import trace
    from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
    from opentelemetry.sdk.trace import TracerProvider

    server = raw(lambda _: (ok(), False))
    provider = provider_at(server.port)
    instrumentor = HTTPXClientInstrumentor()
    already = instrumentor.is_instrumented_by_opentelemetry
    if not already:
        instrumentor.instrument()
    try:
        tracer = TracerProvider().get_tracer("test")
        with trace.use_span(tracer.start_span("caller"), end_on_exit=True):
            assert provider.complete(request(), timeout=5).text == "hello there"
    finally:
        if not already:
            instrumentor.uninstrument()

    assert provider.transport.lean.opened == 0
    assert b"traceparent:" in server.requests[0].lower()
    assert provider.complete(request(), timeout=5).text == "hello there"
    assert provider.transport.lean.opened == 1
