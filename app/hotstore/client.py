"""The hot path's client: one Redis node through a per-thread connection, or a Cluster.

`HotClient` is what the limiter, the token budgets, the denylist and the response cache
hold. Without REDIS_CLUSTER_NODES it wraps a client of REDIS_URL (single or Sentinel)
and runs request-path commands on a connection the calling thread owns
(`ThreadCommands`, app/hotstore/commands.py). With it, a
`redis.cluster.RedisCluster` routes each command to the primary owning its keys' slot;
a script's keys must share one slot (app/hotstore/slots.py). The Cluster client is built
on first use: its constructor asks the seeds for the slot map, and an app must start
(and answer its probes) while the Cluster is unreachable.

Failover: when a primary dies, commands for its slots fail with a connection error until
the Cluster has promoted its replica (`cluster-node-timeout` plus an election); the
client then reloads the slot map from a live node. One retry without backoff: redis-py's
default retry backs off for up to seconds, which a request cannot wait for.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, cast

import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from app.hotstore.commands import ThreadCommands
from app.settings import Settings
from app.settings.redis_url import connect


class HotClient:
    """One node or a Cluster behind the same few calls (`command`, `mget`, `pipeline`)."""

    def __init__(
        self,
        factory: Callable[[], redis.Redis | RedisCluster],
        *,
        cluster: bool,
    ) -> None:
        self.cluster = cluster
        self._factory = factory
        self._client: redis.Redis | RedisCluster | None = None
        self._lock = threading.Lock()
        self._thread: ThreadCommands | None = None

    @classmethod
    def of(cls, client: redis.Redis) -> HotClient:
        """A `HotClient` around an existing client of one Redis (tests, tools)."""
        return cls(lambda: client, cluster=False)

    @property
    def client(self) -> Any:
        """The redis-py client (built on first use); `redis.Redis` or `RedisCluster`."""
        found = self._client
        if found is None:
            with self._lock:
                if self._client is None:
                    self._client = self._factory()
                found = self._client
        return found

    def command(self, *args: str | int | float | bytes) -> object:
        """Run one command: on this thread's own connection, or routed by key slot."""
        if self.cluster:
            with _as_redis_errors():
                return self.client.execute_command(*args)
        commands = self._thread
        if commands is None:
            commands = self._thread = ThreadCommands(cast(redis.Redis, self.client))
        return commands(*args)

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        """Values of `keys` in order; on a Cluster one MGET per slot (not atomic)."""
        if self.cluster:
            with _as_redis_errors():
                return cast(list[bytes | None], self.client.mget_nonatomic(list(keys)))
        return cast(list[bytes | None], self.command("MGET", *keys))

    def pipeline(self) -> Any:
        """A non-transactional pipeline (a Cluster's groups its commands by node)."""
        return self.client.pipeline(transaction=False)

    def execute(self, pipe: Any) -> list[Any]:
        """Send a `pipeline()`'s commands; Cluster errors come out as `RedisError`s."""
        with _as_redis_errors():
            return cast(list[Any], pipe.execute())

    def reset_after_fork(self) -> None:
        """Forget a client (and its connections) inherited from a parent process."""
        with self._lock:
            self._client, self._thread = None, None


@contextlib.contextmanager
def _as_redis_errors() -> Iterator[None]:
    # redis-py raises some Cluster failures outside `RedisError` (no reachable seed while
    # building the slot map, a slot no node serves during a failover: `SlotNotCoveredError`).
    # The hot path's users handle `RedisError` (fail open/closed, compute without cache).
    try:
        yield
    except RedisClusterException as exc:
        raise RedisConnectionError(f"Redis Cluster: {type(exc).__name__}") from exc


def cluster_client(
    settings: Settings, *, timeout: float, max_connections: int = 128
) -> RedisCluster:
    """A `RedisCluster` on REDIS_CLUSTER_NODES with `timeout` for connects and reads."""
    return RedisCluster(
        startup_nodes=[
            ClusterNode(host, port)  # type: ignore[no-untyped-call]
            for host, port in settings.cluster_seeds()
        ],
        password=settings.cluster_password(),
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=max_connections,
        decode_responses=False,
    )


def node_client(url: str, *, timeout: float, sentinel_password: str | None) -> redis.Redis:
    """A client of one Redis (or a Sentinel-managed master) with `timeout`, one retry.

    The single retry covers pooled connections a restarted Redis closed; it is limited to
    connection errors so a slow Redis costs one timeout, not two.
    """
    return connect(
        url,
        sentinel_password=sentinel_password,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
        max_connections=128,
        decode_responses=False,
    )


def hot_client(settings: Settings, *, timeout: float, url: str | None = None) -> HotClient:
    """The hot store for one user (limiter, cache, denylist) with its own `timeout`.

    `url` (default REDIS_URL) is used only without a Cluster.
    """
    if settings.cluster_seeds():
        return HotClient(lambda: cluster_client(settings, timeout=timeout), cluster=True)
    target = url or settings.redis_url
    password = settings.sentinel_password()
    return HotClient(
        lambda: node_client(target, timeout=timeout, sentinel_password=password), cluster=False
    )
