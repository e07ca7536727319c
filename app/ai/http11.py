"""A lean HTTP/1.1 exchange for non-streamed provider calls: one POST, one whole answer.

    pool = LeanPool(backend)                      # per provider transport (app/ai/transport.py)
    answer = pool.post(target, head, body, timeouts)   # -> Answer(status, headers, content)

Why: the provider call was the largest part of a non-streamed generation's CPU. httpx's
request and response models, httpcore's connection pool and h11's state machine cost
about 0.7 ms of Python per call on this project's bench machine (cProfile of
`HttpProvider.complete` against the simulator, docs/performance.md), several times what
sending a prepared request and reading `Content-Length` bytes back costs. Streams keep
httpx (their chunks are parsed as they come, app/ai/deadline.py bounds them there).

The same rules as the httpx path, in the same places:

- Connections go only to addresses `GuardedBackend.addresses` checked (egress policy,
  DNS rebinding: app/ai/transport.py); TLS verifies the certificate against the host
  name with httpx's default context (certifi); the environment proxy, when one applies,
  keeps the httpx path (`GuardedTransport.lean` is None then).
- Timeouts per operation as httpx applies them: `connect` for the TCP (and TLS)
  connect, `write` for sending, `read` for each read of the answer.
- Errors are httpx's exception types (`ConnectError`, `ConnectTimeout`, `ReadTimeout`,
  `WriteTimeout`, `RemoteProtocolError`, `ReadError`), so `failure_from_transport` maps
  both paths alike; a refused address keeps `AddressRefused` as the cause.
- Keep-alive: an idle connection is reused for at most `keepalive_expiry` seconds, and
  never when the peer closed it meanwhile (readable while idle: checked before reuse, as
  httpcore does). A request is never sent twice: a reused connection found dead after
  the request was written is a failure like any other, the gateway's retries decide.
- Bodies by `Content-Length`, chunked, or to the end of the connection; `gzip` and
  `deflate` decoded (the request says it accepts them, as httpx's does).
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

import httpcore
import httpx

#: Longest status or header line, and most header lines, accepted from a provider.
MAX_LINE: Final = 64 * 1024
MAX_HEADERS: Final = 128
_CUT: Final = "peer closed connection without sending complete message body"
_DECODERS: Final[dict[str, Callable[[], zlib._Decompress]]] = {
    "gzip": lambda: zlib.decompressobj(16 + zlib.MAX_WBITS),
    "deflate": lambda: zlib.decompressobj(),
}


class AddressSource(Protocol):
    """What resolves and checks a host (`GuardedBackend`)."""

    def addresses(self, host: str, port: int) -> list[str]: ...


@dataclass(frozen=True)
class Target:
    """Where a request goes, parsed once per URL."""

    scheme: str
    host: str
    port: int
    #: `POST <path> HTTP/1.1` and the `Host` line, ready to send.
    request_line: bytes

    @classmethod
    def of(cls, url: httpx.URL) -> Target:
        default = 443 if url.scheme == "https" else 80
        port = url.port or default
        host_header = url.host if port == default else f"{url.host}:{port}"
        if ":" in url.host:  # an IPv6 literal
            host_header = f"[{url.host}]" if port == default else f"[{url.host}]:{port}"
        line = f"POST {url.raw_path.decode('ascii')} HTTP/1.1\r\nHost: {host_header}\r\n"
        return cls(url.scheme, url.host, port, line.encode("ascii"))


@dataclass(frozen=True)
class Answer:
    """A whole response: status, headers (lower-case names, repeats joined), body."""

    status: int
    headers: dict[str, str]
    content: bytes


class _Conn:
    """One open connection and its read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.rfile = sock.makefile("rb")
        self.idle_since = time.monotonic()

    def close(self) -> None:
        try:
            self.rfile.close()
        finally:
            self.sock.close()

    def dead(self) -> bool:
        """Closed by the peer (or sent something unasked) while it sat idle."""
        if isinstance(self.sock, ssl.SSLSocket) and self.sock.pending():
            return True
        try:  # poll, not select: no FD_SETSIZE limit on the descriptor
            poller = select.poll()
            poller.register(self.sock, select.POLLIN)
            return bool(poller.poll(0))
        except (OSError, ValueError):
            return True


class LeanPool:
    """Keep-alive connections per origin for `post`; thread-safe, re-made after fork."""

    def __init__(
        self,
        backend: AddressSource,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 16,
        keepalive_expiry: float = 5.0,
    ) -> None:
        self.backend = backend
        self._ssl_context = ssl_context
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._idle: dict[tuple[str, str, int], list[_Conn]] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        #: New connections opened (tests: reuse is observable).
        self.opened = 0

    # -- connections -----------------------------------------------------------------------
    def _take(self, key: tuple[str, str, int]) -> _Conn | None:
        now = time.monotonic()
        stale: list[_Conn] = []
        found: _Conn | None = None
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's sockets are not ours
                self._idle, self._pid = {}, os.getpid()
            idle = self._idle.get(key)
            while idle:
                conn = idle.pop()
                if now - conn.idle_since > self.keepalive_expiry or conn.dead():
                    stale.append(conn)
                    continue
                found = conn
                break
        for conn in stale:
            conn.close()
        return found

    def _give(self, key: tuple[str, str, int], conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if self._pid == os.getpid() and len(idle) < self.max_idle:
                idle.append(conn)
                return
        conn.close()

    def _connect(self, target: Target, timeout: float) -> _Conn:
        try:
            addresses = self.backend.addresses(target.host, target.port)
        except httpcore.ConnectError as exc:  # AddressRefused stays the cause
            raise httpx.ConnectError(str(exc)) from exc
        last: Exception | None = None
        for address in addresses:
            try:
                sock = socket.create_connection((address, target.port), timeout=timeout)
            except TimeoutError as exc:
                last = httpx.ConnectTimeout(str(exc))
                continue
            except OSError as exc:
                last = httpx.ConnectError(str(exc))
                continue
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                if target.scheme == "https":
                    sock = self._tls().wrap_socket(sock, server_hostname=target.host)
            except TimeoutError as exc:
                sock.close()
                raise httpx.ConnectTimeout(str(exc)) from exc
            except OSError as exc:  # ssl.SSLError is an OSError
                sock.close()
                raise httpx.ConnectError(str(exc)) from exc
            self.opened += 1
            return _Conn(sock)
        assert last is not None
        raise last

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    def close(self) -> None:
        """Close every idle connection (the next call connects, and resolves, again)."""
        with self._lock:
            idle, self._idle = self._idle, {}
        for conns in idle.values():
            for conn in conns:
                conn.close()

    # -- the exchange ----------------------------------------------------------------------
    def post(self, target: Target, head: bytes, body: bytes, timeouts: dict[str, float]) -> Answer:
        """Send `head` (header lines after Host, each ending CRLF) and `body`; the answer."""
        key = (target.scheme, target.host, target.port)
        conn = self._take(key) or self._connect(target, timeouts["connect"])
        try:
            conn.sock.settimeout(timeouts["write"])
            message = b"%s%sContent-Length: %d\r\n\r\n%s" % (
                target.request_line, head, len(body), body,
            )  # fmt: skip
            try:
                conn.sock.sendall(message)
            except TimeoutError as exc:
                raise httpx.WriteTimeout(str(exc)) from exc
            except OSError as exc:
                raise httpx.WriteError(str(exc)) from exc
            conn.sock.settimeout(timeouts["read"])
            answer, reusable = _read_answer(conn)
        except BaseException:
            conn.close()
            raise
        if reusable:
            self._give(key, conn)
        else:
            conn.close()
        return answer


def _read_answer(conn: _Conn) -> tuple[Answer, bool]:
    """Read one response from `conn`; whether the connection can carry another."""
    try:
        while True:
            version, status = _status_line(conn)
            headers = _headers(conn)
            if status >= 200 or status == 101:
                break  # 1xx interim answers (100 Continue, 103 Early Hints) are skipped
        content, complete_by_close = _body(conn, status, headers)
    except TimeoutError as exc:
        raise httpx.ReadTimeout(str(exc)) from exc
    except OSError as exc:  # reset, TLS alert (ssl.SSLError), ...
        raise httpx.ReadError(str(exc)) from exc
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        decoder = _DECODERS.get(encoding)
        if decoder is None:
            raise httpx.DecodingError(f"unsupported content-encoding {encoding!r}")
        try:
            decompress = decoder()
            content = decompress.decompress(content) + decompress.flush()
        except zlib.error as exc:
            raise httpx.DecodingError(str(exc)) from exc
    tokens = {t.strip() for t in headers.get("connection", "").lower().split(",")}
    reusable = "keep-alive" in tokens if version == b"HTTP/1.0" else "close" not in tokens
    return Answer(status, headers, content), reusable and not complete_by_close


def _line(conn: _Conn) -> bytes:
    line = conn.rfile.readline(MAX_LINE + 1)
    if not line:
        raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
    if len(line) > MAX_LINE or not line.endswith(b"\n"):
        raise httpx.RemoteProtocolError("line too long or cut")
    return line


def _status_line(conn: _Conn) -> tuple[bytes, int]:
    parts = _line(conn).split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise httpx.RemoteProtocolError("malformed status line")
    return parts[0], int(parts[1])


def _headers(conn: _Conn) -> dict[str, str]:
    headers: dict[str, str] = {}
    for _ in range(MAX_HEADERS + 1):
        line = _line(conn)
        if line in (b"\r\n", b"\n"):
            return headers
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip():
            raise httpx.RemoteProtocolError("malformed header line")
        key = name.decode("latin-1").lower()
        text = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text
    raise httpx.RemoteProtocolError("too many header lines")


def _body(conn: _Conn, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
    """The body, and whether it ended with the connection (so it cannot be reused)."""
    if status in (204, 304) or 100 <= status < 200:
        return b"", False
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _chunked(conn), False
    length = headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise httpx.RemoteProtocolError("malformed Content-Length")
        content = conn.rfile.read(int(length))
        if len(content) < int(length):
            raise httpx.RemoteProtocolError(_CUT)
        return content, False
    return conn.rfile.read(), True


def _chunked(conn: _Conn) -> bytes:
    parts: list[bytes] = []
    while True:
        size_text = _line(conn).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise httpx.RemoteProtocolError("malformed chunk size") from None
        if size == 0:
            while _line(conn) not in (b"\r\n", b"\n"):  # trailers
                pass
            return b"".join(parts)
        chunk = conn.rfile.read(size + 2)
        if len(chunk) < size + 2:
            raise httpx.RemoteProtocolError(_CUT)
        parts.append(chunk[:size])
