"""Where an AI provider's `baseURL` may point: one policy for the spec, the writers and the
HTTP client (pure, standard library only).

Three layers use it (docs/ai.md, "Where a provider may point"):

* `static_problem`: what no process setting can allow, checked by the spec model (so the
  admin API and the operator refuse it alike, and the CRD carries the same rule as CEL):
  a scheme other than http/https, a link-local address (169.254.0.0/16, fe80::/10, RFC
  3927 / RFC 4291 section 2.5.6) or a cloud metadata endpoint written literally;
* `policy_problem`: that plus plain http only for hosts in `AI_ALLOWED_HTTP_HOSTS`,
  checked where a row is written and again by the provider client on every call, so a
  row written before this rule existed cannot be used either;
* `refused_address`: the same refusal for the addresses a host name resolves to, checked
  by the provider transport on each new connection (app/ai/transport.py), against
  DNS answers that point a harmless name at a metadata endpoint (DNS rebinding).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection
from typing import Final
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

SCHEMES: Final = frozenset({"http", "https"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
#: Instance metadata endpoints reachable by name (Google Cloud's; the others use addresses).
METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "metadata.goog"})
#: Instance metadata endpoints outside the link-local ranges: AWS's IPv6 endpoint and
#: Alibaba Cloud's. 169.254.169.254 (AWS, Azure, Google, Oracle, ...) is link-local.
METADATA_ADDRESSES: Final = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)
#: RFC 6052 well-known NAT64 prefix: 64:ff9b::a9fe:a9fe reaches 169.254.169.254 through
#: a NAT64 gateway.
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


def host_of(url: str) -> str:
    """The URL's host, lower case, without IPv6 brackets or a trailing dot."""
    host = urlsplit(url).hostname or ""
    return host.rstrip(".").lower()


def origin(url: str | None) -> str | None:
    """`scheme://host:port` of `url` (default port filled in); None without a URL."""
    if not url:
        return None
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme)
    except ValueError:
        port = None
    return f"{scheme}://{host_of(url)}:{port}"


def _address(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # fe80::1%eth0: zone dropped
    except ValueError:
        return None


def refused_address(address: IPAddress) -> bool:
    """Link-local or a metadata endpoint, also when wrapped in IPv6 (mapped, NAT64)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return refused_address(address.ipv4_mapped)
        if address in _NAT64:
            return refused_address(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return address.is_link_local or address in METADATA_ADDRESSES


def static_problem(url: str) -> str | None:
    """Why no setting can allow `url` as a provider base URL, or None."""
    scheme = urlsplit(url).scheme.lower()
    if scheme not in SCHEMES:
        return "must be an http or https URL"
    host = host_of(url)
    if host in METADATA_HOSTS:
        return f"{host} is a cloud metadata endpoint, never a provider"
    address = _address(host)
    if address is not None and refused_address(address):
        return (
            f"{address} is a link-local or cloud metadata address (169.254.0.0/16, "
            "fe80::/10, fd00:ec2::254, 100.100.100.200), never a provider"
        )
    return None


def http_allowed(host: str, allowed_http_hosts: Collection[str]) -> bool:
    """Is `host` one of the hosts that may be called over plain http?"""
    wanted = host.rstrip(".").lower()
    return any(wanted == h.strip().strip("[]").rstrip(".").lower() for h in allowed_http_hosts)


def policy_problem(url: str, allowed_http_hosts: Collection[str]) -> str | None:
    """Why this process must not call `url`, or None: `static_problem`, or http off-list."""
    problem = static_problem(url)
    if problem is not None:
        return problem
    if urlsplit(url).scheme.lower() == "http" and not http_allowed(
        host_of(url), allowed_http_hosts
    ):
        return (
            f"plain http is refused for {host_of(url)}: use https, or add the host to "
            "AI_ALLOWED_HTTP_HOSTS (for servers on a trusted network)"
        )
    return None
