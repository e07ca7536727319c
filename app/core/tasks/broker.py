"""Celery's Redis broker transport, fixed so a worker survives its broker going away.

**The defect** (kombu 5.7.0, `kombu/transport/redis.py`). When the worker's consumer
loses the broker, Celery closes the kombu connection twice
(`celery/worker/consumer/consumer.py`, `on_connection_error_after_connected`: `collect()`,
then `close()`). If the error reached the consumer through another socket (the remote
control's pub/sub one) while a `BRPOP` was in flight, the first close of the Redis
`Channel` stops at its first line: reading the pending `BRPOP` reply raises
`ConnectionError`, which kombu's `maybe_close_channel` ignores. `collect()` then clears
`Transport.client` (`kombu/connection.py`, `_do_close_transport`). The second close gets
further: it drops the channel's connection pools (`_disconnect_pools` sets them to None)
and then restores the unacknowledged messages of late-ack tasks (`virtual.Channel.close`,
`QoS.restore_unacked_once`), which builds a new pool from `self.connection.client`
(`Channel._connparams`): `AttributeError: 'NoneType' object has no attribute 'hostname'`.
That is not a connection error, so it escapes `ignore_errors` and the worker stops for
good ("Unrecoverable error"). It takes a late-ack task held by one pool process while the
consumer asks for work for another, the normal state of a worker with `--concurrency` > 1.
The same rebuild runs when a task that was running during the outage finishes and
acknowledges its message on the old, closed channel. Reproduced on the first outage by
tests/ai/jobs/test_broker_restarts.py with kombu's own transport.

**The fix, at the cause**: a channel keeps its pools after it is closed. Closing
disconnects their sockets (what kombu's close is for) but keeps the pool objects, which
know the address and credentials and reconnect lazily. A closed channel can then still
restore or acknowledge a message once Redis answers again, without reading anything from
the closed transport (while Redis is down, the restore fails with a connection error,
which kombu ignores: the message stays in Redis's unacked hash, to be acknowledged when
the task finishes or restored after the visibility timeout). After a fork the child drops
the pools, as kombu does (its connections are the parent's). A restore after kombu
detached the channel from its transport finds the broker state through the transport the
channel was opened on.

`app/core/tasks/__init__.py` selects this transport through Celery's `broker_transport`
setting for `redis://` and `rediss://` brokers.
"""

from __future__ import annotations

from typing import Any

from kombu.transport import redis as kombu_redis

__all__ = ["Channel", "Transport"]


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
