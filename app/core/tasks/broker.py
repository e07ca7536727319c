"""Celery's Redis and Redis Sentinel broker transports, fixed so a worker survives its broker
going away (kombu 5.7.0: "Unrecoverable error: AttributeError: 'NoneType' object has no
attribute 'hostname'"): a closed channel keeps its pools (sockets closed, addresses kept,
reconnecting lazily), so it can still restore or acknowledge; a forked child drops them.
Why and how: docs/jobs.md, "When the broker restarts"; tests/ai/jobs/test_broker_restarts.py."""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "SentinelChannel", "SentinelTransport", "Transport"]


class Channel(kombu_redis.Channel):
    """kombu's Redis channel whose pools survive `close()` (see the module doc)."""

    _pool: Any
    _async_pool: Any
    connection: Any

    def __init__(self, connection: Any, *args: Any, **kwargs: Any) -> None:
        # kombu sets `channel.connection = None` once the channel is closed
        # (`virtual.Transport.close_channel`); its broker state stays reachable from here.
        self._opened_on = connection
        super().__init__(connection, *args, **kwargs)

    @property
    def state(self) -> Any:
        """The exchange/queue bindings (kombu's `BrokerState`), also after the close."""
        return (self.connection or self._opened_on).state

    def _disconnect_pools(self) -> None:
        for pool in (self._pool, self._async_pool):
            if pool is not None:
                pool.disconnect()

    def _after_fork(self) -> None:
        # The parent's sockets: drop the pools altogether (kombu's own behaviour).
        kombu_redis.Channel._disconnect_pools(self)  # type: ignore[attr-defined]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel`."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with `Channel`'s fix."""


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel  # kombu's Sentinel transport with our channel
