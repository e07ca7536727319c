"""The provider transport: httpx's own, connecting only to addresses the egress policy allows.

A host name is resolved once per new connection, every answer is checked with
`app.core.egress.refused_address` (link-local, cloud metadata), and the socket is opened
to an address that was checked, never by resolving the name a second time: a DNS answer
that changes between a check and the connect (DNS rebinding) cannot slip through. TLS
still verifies the certificate against the host name (httpcore takes SNI from the URL's
origin, not from the address dialled). Pooled keep-alive connections are reused without
resolving again, so the check costs one `getaddrinfo` per new connection, as before.

Through an environment proxy the proxy resolves the target, so only the URL checks apply
(app/ai/providers/base.py); egress filtering is then the proxy's job.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable
from typing import Any, Final

import httpcore
import httpx

from app.ai.http11 import LeanPool
from app.core import egress

Resolver = Callable[[str, int], list[str]]
_FAMILIES: Final = (socket.AF_INET, socket.AF_INET6)


class AddressRefused(httpcore.ConnectError):
    """The provider's host resolves to a link-local or cloud metadata address."""


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses `getaddrinfo` gives for a TCP connection to `host:port`, in order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos if info[0] in _FAMILIES]


class GuardedBackend(httpcore.SyncBackend):
    """httpcore's socket backend that refuses forbidden addresses before connecting."""

    def __init__(self, resolve: Resolver = system_resolver) -> None:
        self.resolve = resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """Checked addresses of `host`; `AddressRefused` if any answer is forbidden."""
        try:
            found = self.resolve(host, port)
        except OSError as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        for address in found:
            # Any forbidden answer refuses the name: a name that also points at a metadata
            # endpoint is not one to send a key to.
            if egress.refused_address(ipaddress.ip_address(address.split("%", 1)[0])):
                raise AddressRefused(f"{host} resolves to a refused address ({address})")
        if not found:
            raise httpcore.ConnectError(f"{host} resolves to no address")
        return found

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        """Connect to the first reachable checked address of `host` (like create_connection)."""
        last: httpcore.ConnectError | httpcore.ConnectTimeout | None = None
        for address in self.addresses(host, port):
            try:
                return super().connect_tcp(
                    address,
                    port,
                    timeout=timeout,
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last


class GuardedTransport(httpx.HTTPTransport):
    """`httpx.HTTPTransport` whose direct connections go through `GuardedBackend`.

    `lean` is the same guard's pool for whole (non-streamed) answers (app/ai/http11.py);
    None through a proxy, where only httpx's path applies.
    """

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        proxy: str | None = None,
        backend: httpcore.NetworkBackend | None = None,
    ) -> None:
        super().__init__(limits=limits, proxy=proxy)
        self.lean: LeanPool | None = None
        if proxy is None:
            guard = backend or GuardedBackend()
            # httpx takes no network backend (encode/httpx#3749 proposes one): build the
            # same pool it would, with ours. OpenTelemetry's httpx instrumentation wraps
            # `handle_request`, which this class inherits untouched.
            self._pool = httpcore.ConnectionPool(
                ssl_context=httpx.create_ssl_context(),
                max_connections=limits.max_connections,
                max_keepalive_connections=limits.max_keepalive_connections,
                keepalive_expiry=limits.keepalive_expiry,
                network_backend=guard,
            )
            if isinstance(guard, GuardedBackend):
                self.lean = LeanPool(
                    guard,
                    max_idle=limits.max_keepalive_connections or 16,
                    keepalive_expiry=limits.keepalive_expiry or 5.0,
                )

    def close(self) -> None:
        """Close httpx's pooled connections and the lean pool's."""
        if self.lean is not None:
            self.lean.close()
        super().close()


def refused(exc: BaseException) -> bool:
    """Did this transport error come from `AddressRefused`?"""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, AddressRefused):
            return True
        cause = cause.__cause__
    return False
