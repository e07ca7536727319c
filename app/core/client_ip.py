"""Who a client is for IP-keyed limits: its address, or its IPv6 network.

`request.remote_addr` is the TCP peer, or the address the trusted proxies reported when
`TRUSTED_PROXIES` > 0 (`ProxyFix` in app/factory.py). Keying limits on it as is would
give an IPv6 client a fresh bucket per address, and one host usually holds a whole /64
(RFC 4291 section 2.5.1 interface identifiers, RFC 8981 temporary addresses): so IPv6
addresses are reduced to their `/RATELIMIT_IPV6_PREFIX` network. IPv4 stays per address,
and an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, RFC 4291 section 2.5.5.2, what a
dual-stack socket reports for an IPv4 peer) is that IPv4 address.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Final

from flask import current_app, request

#: The bucket of a request whose peer address is unknown or not an IP (a Unix socket).
UNKNOWN: Final = "unknown"
DEFAULT_IPV6_PREFIX: Final = 64


@functools.lru_cache(maxsize=4096)
def bucket(address: str | None, ipv6_prefix: int = DEFAULT_IPV6_PREFIX) -> str:
    """The limit key of a client address: IPv4 as is, IPv6 as its `/ipv6_prefix` network."""
    if not address:
        return UNKNOWN
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # drop an IPv6 zone (`fe80::1%eth0`)
    except ValueError:
        return address[:64]  # not an IP: bounded, as a Redis key part
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        if ipv6_prefix < 128:
            return str(ipaddress.IPv6Network((ip, ipv6_prefix), strict=False))
    return str(ip)


def request_bucket() -> str:
    """The current request's client bucket (settings of the current app)."""
    prefix = current_app.extensions["settings"].ratelimit_ipv6_prefix
    return bucket(request.remote_addr, prefix)
