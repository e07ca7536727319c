"""Redis through Sentinel: one URL form for every Redis user, redis-py's and Celery's clients.

    REDIS_URL=redis+sentinel://[[user]:password@]host1[:26379][,host2[:26379]...]/<master>[/<db>]
    REDIS_SENTINEL_PASSWORD=...   # only when the sentinels themselves require a password

The credentials in the URL are the data nodes' (the master's and replicas' `requirepass`
or ACL user); the sentinels get `REDIS_SENTINEL_PASSWORD` (Sentinel's own `requirepass`,
redis.io "High availability with Redis Sentinel", "Configuring Sentinel instances with
authentication"). `connect` is `redis.Redis.from_url` for every scheme, plus this one:
a client whose pool asks the sentinels for the master's address on every new connection
and drops a connection whose server answers READONLY (a demoted master), both from
redis-py's `SentinelConnectionPool` / `SentinelManagedConnection`. Celery gets the same
URL in the form its sentinel transport and result backend read (`celery_redis`).

Here, below app/core, because Settings checks the URL (`parse`) when it loads, and app/core
is at its size budget (tests/test_layers.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import quote, unquote, urlsplit

import redis
from redis.sentinel import Sentinel

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


#: Least seconds a sentinel gets to answer: its lookup runs only when a connection is
#: (re)made. With the limiter's 0.2 s budget for the lookup too, the first requests of
#: tests/chaos/test_sentinel_failover.py on a loaded machine timed out (503s before any
#: fault); with this floor they did not.
SENTINEL_TIMEOUT_FLOOR: Final = 0.5


def _sentinel_kwargs(sentinel_password: str | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    # redis-py gives the sentinels only the socket_* options unless told otherwise
    # (redis/sentinel.py, Sentinel.__init__): keep those, add the sentinels' password.
    own = {k: v for k, v in kwargs.items() if k.startswith("socket_")}
    for key in ("socket_timeout", "socket_connect_timeout"):
        own[key] = max(own.get(key) or 0.0, SENTINEL_TIMEOUT_FLOOR)
    if sentinel_password:
        own["password"] = sentinel_password
    return own


def connect(url: str, *, sentinel_password: str | None = None, **kwargs: Any) -> redis.Redis:
    """`redis.Redis.from_url(url, **kwargs)`, also for `redis+sentinel://` URLs.

    A Sentinel client's connections resolve the master when they connect and give up a
    server that answers READONLY, so commands follow a failover once Sentinel has
    promoted a replica; until then they fail with a `ConnectionError` (the old master is
    gone, or `MasterNotFoundError` while the sentinels see it down).
    """
    if not is_sentinel_url(url):
        return redis.Redis.from_url(url, **kwargs)
    target = parse(url)
    manager = Sentinel(  # type: ignore[no-untyped-call]
        list(target.sentinels), sentinel_kwargs=_sentinel_kwargs(sentinel_password, kwargs)
    )
    client: redis.Redis = manager.master_for(  # type: ignore[no-untyped-call]
        target.master,
        db=target.db,
        username=target.username,
        password=target.password,
        **kwargs,
    )
    return client


def cluster_seeds(value: str) -> list[tuple[str, int]]:
    """`host:port[,host:port...]` (REDIS_CLUSTER_NODES) as pairs; a ValueError names the fault."""
    seeds: list[tuple[str, int]] = []
    for item in value.split(","):
        host, colon, port = item.strip().rpartition(":")
        if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("Redis Cluster nodes must be host:port, comma-separated")
        seeds.append((host.strip("[]"), int(port)))
    return seeds


@dataclass(frozen=True)
class CeleryRedis:
    """A Redis URL in the shape Celery reads, with the transport options it needs."""

    url: str = field(repr=False)
    transport_options: dict[str, Any] = field(default_factory=dict, repr=False)
    sentinel: bool = False


def celery_redis(
    url: str, *, sentinel_password: str | None = None, socket_timeout: float = 5.0
) -> CeleryRedis:
    """Celery's form of `url`: `sentinel://...;sentinel://...` plus `master_name`.

    kombu's `SentinelChannel` and Celery's `SentinelBackend` take every sentinel as its own
    `sentinel://` URL joined by `;`, the data nodes' credentials and database in each, and
    the master's name and the sentinels' own connection options in the transport options
    (kombu/transport/redis.py, celery/backends/redis.py). The sentinels get timeouts
    explicitly: Celery's backend would otherwise open them with none at all (its
    `sentinel_kwargs` default is `{}`, which redis-py takes as "no options"). Other URLs
    pass unchanged.
    """
    if not is_sentinel_url(url):
        return CeleryRedis(url=url)
    target = parse(url)
    auth = ""
    if target.username or target.password:
        user = quote(target.username or "", safe="")
        auth = f"{user}:{quote(target.password or '', safe='')}@"
    urls = ";".join(
        f"sentinel://{auth}{host}:{port}/{target.db}" for host, port in target.sentinels
    )
    sentinel_kwargs = _sentinel_kwargs(
        sentinel_password,
        {"socket_timeout": socket_timeout, "socket_connect_timeout": socket_timeout},
    )
    options = {"master_name": target.master, "sentinel_kwargs": sentinel_kwargs}
    return CeleryRedis(url=urls, transport_options=options, sentinel=True)
