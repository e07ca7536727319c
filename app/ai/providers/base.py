"""The provider protocol and the HTTP machinery every wire format shares.

One call is one HTTP request with explicit timeouts (connect from settings, read/write
from the provider's `timeoutSeconds`, capped by what is left of the request deadline);
httpx itself never retries (its transport default is 0 retries), so the gateway is the
one layer that retries (openai-python retries twice by default: attempts multiply). Statuses and
transport errors become `ProviderFailure`s here, in one place.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection, Iterator, Mapping
from typing import Any, Final, Protocol

import httpx

from app.ai import sse
from app.ai.deadline import bounded
from app.ai.errors import FailureKind, ProviderFailure
from app.ai.http11 import Answer, Target
from app.ai.retry import parse_retry_after
from app.ai.transport import GuardedTransport
from app.ai.transport import refused as address_refused
from app.ai.types import ChatRequest, Completion, Embeddings, StreamEvent
from app.core import egress
from app.core.specs.ai_provider import AIProviderSpec

log = logging.getLogger("structured_api.ai")

#: Longest error body read (and thrown away) before closing a failed response.
MAX_ERROR_BODY = 64 * 1024
USER_AGENT: Final = "structured-api-ai-gateway"


class ProviderStream(Protocol):
    """An open stream: iterate events, then (or instead) close it."""

    def __iter__(self) -> Iterator[StreamEvent]: ...

    def close(self) -> None: ...


class Provider(Protocol):
    """What the gateway calls. `timeout` is the most one call may take, in seconds."""

    name: str
    spec: AIProviderSpec

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion: ...

    def stream(
        self, request: ChatRequest, *, timeout: float, deadline: float | None = None
    ) -> ProviderStream: ...

    def embed(
        self, model: str, inputs: tuple[str, ...], *, dimensions: int | None, timeout: float
    ) -> Embeddings: ...


def failure_from_status(
    provider: str, status: int, headers: Mapping[str, str]
) -> ProviderFailure | None:
    """The failure an HTTP status means, or None for 2xx."""
    if 200 <= status < 300:
        return None
    retry_after = parse_retry_after(headers.get("retry-after"))
    if status == 429:
        kind = FailureKind.RATE_LIMITED
    elif status == 408:
        kind = FailureKind.TIMEOUT
    elif status >= 500:
        kind = FailureKind.SERVER_ERROR
    elif status in (401, 403):
        kind = FailureKind.AUTH
    elif status in (400, 422):
        kind = FailureKind.REJECTED
    else:
        kind = FailureKind.CLIENT_ERROR
    return ProviderFailure(kind, provider=provider, status=status, retry_after=retry_after)


def failure_from_transport(provider: str, exc: httpx.HTTPError) -> ProviderFailure:
    """The failure a transport exception means (timeouts, refused or dropped connections)."""
    if address_refused(exc):
        return ProviderFailure(FailureKind.ORIGIN_REFUSED, provider=provider, detail="address")
    if isinstance(exc, httpx.TimeoutException):
        return ProviderFailure(FailureKind.TIMEOUT, provider=provider, detail=type(exc).__name__)
    if isinstance(exc, httpx.ConnectError):
        return ProviderFailure(FailureKind.CONNECT, provider=provider, detail="connect")
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return ProviderFailure(FailureKind.TRUNCATED, provider=provider, detail=type(exc).__name__)
    return ProviderFailure(FailureKind.CONNECT, provider=provider, detail=type(exc).__name__)


def bad_response(provider: str, what: str) -> ProviderFailure:
    """A 2xx answer we cannot use."""
    return ProviderFailure(FailureKind.BAD_RESPONSE, provider=provider, detail=what)


def _httpx_traced() -> bool:
    """Is OpenTelemetry's httpx instrumentation wrapping `HTTPTransport.handle_request`?"""
    return hasattr(httpx.HTTPTransport.handle_request, "__wrapped__")


def _header_block(headers: Mapping[str, str]) -> bytes | None:
    """`Name: value` lines for the lean path; None if a header could split the request
    (CR, LF or NUL in a key from a Secret): httpx's path then refuses it as before."""
    lines = []
    for name, value in headers.items():
        if any(c in name + value for c in "\r\n\0"):
            return None
        lines.append(f"{name}: {value}\r\n")
    try:
        return "".join(lines).encode("latin-1")
    except UnicodeEncodeError:
        return None


class HttpStream:
    """A provider's SSE response parsed into events; raises `ProviderFailure` on faults."""

    def __init__(
        self, provider: HttpProvider, response: httpx.Response, deadline: float | None = None
    ) -> None:
        self.provider = provider
        self.response = response
        # Checked at every chunk received, below the SSE parser (app/ai/deadline.py).
        bounded(response, deadline=deadline, provider=provider.name)

    def __iter__(self) -> Iterator[StreamEvent]:
        name = self.provider.name
        finished = False
        # Per-stream parser state (Anthropic numbers tool calls by content block).
        state: dict[str, Any] = {}
        try:
            for event_name, data in sse.iter_events(self.response.iter_lines()):
                if data == "[DONE]":
                    yield StreamEvent(done=True)
                    return
                try:
                    payload = json.loads(data)
                except ValueError:
                    raise bad_response(name, "stream event is not JSON") from None
                event = self.provider.parse_event(event_name, payload, state)
                if event is None:
                    continue
                finished = finished or event.finish_reason is not None
                yield event
                if event.done:
                    return
        except httpx.HTTPError as exc:
            raise failure_from_transport(name, exc) from None
        if finished:
            # Some OpenAI-compatible servers end after the finish_reason chunk, no [DONE].
            yield StreamEvent(done=True)
            return
        raise ProviderFailure(FailureKind.TRUNCATED, provider=name, detail="stream ended early")

    def close(self) -> None:
        """Close the upstream response (the provider sees the connection go)."""
        self.response.close()


class HttpProvider:
    """Base of the HTTP wire formats; subclasses say where, what and how to read it.

    Calls go straight to the provider's pooled `httpx.HTTPTransport` (its public
    `handle_request`), with the request built once per call from cached parts: see
    `ClientPool` for why no `httpx.Client`. OpenTelemetry's httpx instrumentation wraps
    exactly that method, so provider calls are still traced and carry `traceparent`.
    """

    def __init__(
        self,
        *,
        name: str,
        spec: AIProviderSpec,
        api_key: str | None,
        transport: httpx.BaseTransport,
        connect_timeout: float,
        allowed_http_hosts: Collection[str] = (),
    ) -> None:
        self.name = name
        self.spec = spec
        self._api_key = api_key
        self.transport = transport
        self.connect_timeout = connect_timeout
        # Checked on every call, not trusted from the write: a row stored before the
        # policy (or past it, straight into PostgreSQL) never reaches a refused origin.
        self.refused = egress.policy_problem(str(spec.baseURL), allowed_http_hosts)
        if self.refused is not None:
            log.warning("AI provider %s is never called: baseURL %s", name, self.refused)
        self._urls: dict[str, httpx.URL] = {}
        self._headers = {
            False: self._build_headers("application/json"),
            True: self._build_headers("text/event-stream"),
        }
        self._targets: dict[str, Target] = {}
        self._lean_head = _header_block(self._headers[False])

    def __repr__(self) -> str:  # never the key
        return f"<{type(self).__name__} {self.name}>"

    # -- what subclasses provide ---------------------------------------------------------
    def url(self, request: ChatRequest) -> str:
        """Full URL of the call."""
        raise NotImplementedError

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Headers carrying the key."""
        raise NotImplementedError

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """JSON body of the call."""
        raise NotImplementedError

    def parse(self, payload: Any) -> Completion:
        """A validated completion from a 2xx JSON body; `bad_response` otherwise."""
        raise NotImplementedError

    def parse_event(
        self, event: str | None, payload: Any, state: dict[str, Any]
    ) -> StreamEvent | None:
        """One stream event, None to skip it; raise `ProviderFailure` for error events.

        `state` is a dict kept for the length of one stream.
        """
        raise NotImplementedError

    def embed(
        self,
        model: str,  # noqa: ARG002
        inputs: tuple[str, ...],  # noqa: ARG002
        *,
        dimensions: int | None,  # noqa: ARG002
        timeout: float,  # noqa: ARG002
    ) -> Embeddings:
        """Embeddings of `inputs` (only wire formats that have them override this;
        app/ai/capabilities.py keeps others from being asked)."""
        raise ProviderFailure(FailureKind.CLIENT_ERROR, provider=self.name, detail="no embeddings")

    # -- the calls -----------------------------------------------------------------------
    def _build_headers(self, accept: str) -> dict[str, str]:
        headers = {
            "Accept": accept,
            "Accept-Encoding": "gzip, deflate",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
        }
        if self._api_key:
            headers.update(self.auth_headers(self._api_key))
        return headers

    def _timeout(self, timeout: float) -> dict[str, float]:
        read = max(0.001, min(float(self.spec.timeoutSeconds), timeout))
        return {"connect": min(self.connect_timeout, read), "read": read, "write": read,
                "pool": read}  # fmt: skip

    def _request(self, request: ChatRequest, *, stream: bool, timeout: float) -> httpx.Request:
        return self._build(self.url(request), self.body(request, stream=stream), stream, timeout)

    def _build(self, url: str, body: dict[str, Any], stream: bool, timeout: float) -> httpx.Request:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = httpx.URL(url)
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        return httpx.Request(
            "POST",
            parsed,
            headers=self._headers[stream],
            content=content,
            extensions={"timeout": self._timeout(timeout)},
        )

    def _send(self, http_request: httpx.Request) -> httpx.Response:
        if self.refused is not None:
            raise ProviderFailure(FailureKind.ORIGIN_REFUSED, provider=self.name, detail="url")
        try:
            response = self.transport.handle_request(http_request)
        except httpx.HTTPError as exc:
            raise failure_from_transport(self.name, exc) from None
        response.request = http_request
        return response

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:
        """One non-streamed call."""
        return self.parse(self.post_json(self.url(request), self.body(request, stream=False),
                                         timeout=timeout))  # fmt: skip

    def post_json(self, url: str, body: dict[str, Any], *, timeout: float) -> Any:
        """POST `body` to `url`; the decoded 2xx JSON answer (failures raised).

        Through the transport's lean pool (app/ai/http11.py) when it has one and httpx is
        not instrumented (tracing on: httpx's path, whose span carries `traceparent`).
        """
        transport = self.transport
        lean = transport.lean if isinstance(transport, GuardedTransport) else None
        if lean is None or self._lean_head is None or _httpx_traced():
            return self._call(self._build(url, body, False, timeout))
        if self.refused is not None:
            raise ProviderFailure(FailureKind.ORIGIN_REFUSED, provider=self.name, detail="url")
        target = self._targets.get(url)
        if target is None:
            target = self._targets[url] = Target.of(self._urls.get(url) or httpx.URL(url))
        content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        try:
            answer = lean.post(target, self._lean_head, content, self._timeout(timeout))
        except httpx.HTTPError as exc:
            raise failure_from_transport(self.name, exc) from None
        return self._decode(answer)

    def _decode(self, answer: Answer) -> Any:
        failure = failure_from_status(self.name, answer.status, answer.headers)
        if failure is not None:
            raise failure
        try:
            return json.loads(answer.content)
        except ValueError:
            raise bad_response(self.name, "body is not JSON") from None

    def _call(self, http_request: httpx.Request) -> Any:
        response = self._send(http_request)
        try:
            failure = failure_from_status(self.name, response.status_code, response.headers)
            if failure is not None:
                raise failure
            try:
                response.read()
            except httpx.HTTPError as exc:
                raise failure_from_transport(self.name, exc) from None
        finally:
            response.close()
        try:
            return json.loads(response.content)
        except ValueError:
            raise bad_response(self.name, "body is not JSON") from None

    def stream(
        self, request: ChatRequest, *, timeout: float, deadline: float | None = None
    ) -> HttpStream:
        """Open a streamed call; the status is checked before returning."""
        response = self._send(self._request(request, stream=True, timeout=timeout))
        failure = failure_from_status(self.name, response.status_code, response.headers)
        if failure is not None:
            response.close()
            raise failure
        content_type = response.headers.get("content-type", "")
        if "text/event-stream" not in content_type:
            response.close()
            raise bad_response(self.name, "stream is not text/event-stream")
        return HttpStream(self, response, deadline)
