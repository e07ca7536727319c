"""`redis+sentinel://` URLs: their parts, checked when Settings load (app/core/redis_sentinel.py
builds the clients from them; the form is documented there and in docs/operations.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

SCHEME: Final = "redis+sentinel"
DEFAULT_PORT: Final = 26379


@dataclass(frozen=True)
class SentinelTarget:
    """What a `redis+sentinel://` URL names: the sentinels, the master's name, a database."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def is_sentinel_url(url: str) -> bool:
    """True for a `redis+sentinel://` URL."""
    return url.partition("://")[0].lower() == SCHEME


def parse(url: str) -> SentinelTarget:
    """Split a `redis+sentinel://` URL; a ValueError names the part that is wrong.

    Messages never repeat the URL: it may carry the data nodes' password.
    """
    if not is_sentinel_url(url):
        raise ValueError(f"not a {SCHEME}:// URL")
    rest = url.partition("://")[2]
    userinfo, at, hosts_and_path = rest.rpartition("@")
    if not at:
        userinfo, hosts_and_path = "", rest
    hosts, _, path = hosts_and_path.partition("/")
    path, _, query = path.partition("?")
    if query:
        raise ValueError(f"{SCHEME}:// URLs take no query parameters")
    sentinels: list[tuple[str, int]] = []
    for item in hosts.split(","):
        parts = urlsplit(f"//{item.strip()}")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ValueError(f"{SCHEME}:// sentinel port is not a number") from None
        if not parts.hostname:
            raise ValueError(f"{SCHEME}:// needs host[:port] for every sentinel")
        sentinels.append((parts.hostname, port))
    segments = [s for s in path.split("/") if s]
    if not segments or len(segments) > 2:
        raise ValueError(f"{SCHEME}:// needs /<master name>[/<db>] after the sentinels")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ValueError(f"{SCHEME}:// database must be a number")
    username, colon, password = userinfo.partition(":")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        master=unquote(segments[0]),
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) if colon and password else None,
    )
