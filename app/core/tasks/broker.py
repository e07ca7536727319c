"""Celery's Redis broker transport, fixed so a worker survives its broker going away.

kombu 5.7.0 stopped a worker for good ("Unrecoverable error: AttributeError: 'NoneType'
object has no attribute 'hostname'") when Celery closed a lost connection while a pool
process held a late-ack task: the second close restored the unacknowledged message
through a pool rebuilt from a transport kombu had already detached. The fix, at the
cause: a channel keeps its pools after it is closed (sockets closed, addresses and
credentials kept, reconnecting lazily), so it can still restore or acknowledge once Redis
answers; a forked child drops them as kombu does. The whole chain, with kombu's and
Celery's functions: docs/jobs.md, "When the broker restarts". Regression test:
tests/ai/jobs/test_broker_restarts.py.
"""

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
        # Behind Sentinel: also the sockets to the sentinels (kombu closes them for the same
        # leak, celery/kombu#1108), keeping the managers, which reconnect lazily.
        for manager in (
            getattr(self, "_sentinel_manager", None),
            getattr(self, "_async_sentinel_manager", None),
        ):
            for node in getattr(manager, "sentinels", ()):
                node.connection_pool.disconnect()

    def _after_fork(self) -> None:
        # The parent's sockets: drop the pools altogether (kombu's own behaviour).
        kombu_redis.Channel._disconnect_pools(self)  # type: ignore[attr-defined]


class Transport(kombu_redis.Transport):
    """kombu's Redis transport with `Channel`."""

    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):
    """kombu's Sentinel channel with the same fix: its pools (and the Sentinel managers
    that resolve the master for them) survive `close()`. A kept pool asks the sentinels
    for the master again on its next connection, so a restore after a failover reaches
    the new master."""


class SentinelTransport(kombu_redis.SentinelTransport):
    """kombu's Sentinel transport with `SentinelChannel`."""

    Channel = SentinelChannel
