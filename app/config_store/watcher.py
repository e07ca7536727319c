"""The background thread that keeps a process's snapshot current.

It SUBSCRIBEs to the generation channel and reloads as soon as a newer generation is
announced; it also polls the generation row every `config_poll_interval` seconds, which
covers lost messages, a Redis outage and writers that could not publish. It owns its
connections (one pooled PostgreSQL connection, one Redis connection), created inside
the thread, so nothing crosses a fork and an exhausted request pool cannot stall
reloads. Any failure keeps the last snapshot and retries with capped exponential
backoff; a request never waits for this thread (it reads the current reference).
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
import weakref
from typing import TYPE_CHECKING, Final

from redis.backoff import NoBackoff
from redis.client import PubSub
from redis.exceptions import RedisError
from redis.retry import Retry
from sqlalchemy import Engine, create_engine
from sqlalchemy.exc import SQLAlchemyError

from app.config_store import channel
from app.config_store.loader import load_snapshot, read_generation
from app.core.observability import metrics
from app.settings.redis_url import connect

if TYPE_CHECKING:
    from app.config_store.store import ConfigStore

log = logging.getLogger("structured_api.config")

# A blocking read never lasts longer than this, so stop() is honoured promptly.
_MAX_BLOCK: Final = 0.5
_REDIS_BACKOFF_CAP: Final = 5.0


def _backoff(failures: int, base: float, cap: float) -> float:
    # Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads the
    # reconnects of many workers after an outage.
    return random.uniform(base / 2, min(cap, base * 2 ** min(failures, 16)))


class Watcher:
    """State of one watcher thread; `run()` is the thread body."""

    def __init__(self, store: ConfigStore, stop: threading.Event) -> None:
        self._store = weakref.ref(store)
        self._stop = stop
        cfg = store.settings
        self.poll_interval = cfg.config_poll_interval
        self.backoff_cap = cfg.config_retry_max_seconds
        self._database_url = cfg.database_url
        self._redis_url = cfg.redis_url
        self._sentinel_password = cfg.sentinel_password()
        self._connect_timeout = cfg.db_connect_timeout
        self._redis_timeout = cfg.redis_connect_timeout
        self._engine: Engine | None = None
        self._pubsub: PubSub | None = None
        self._redis_failures = 0
        self._db_failures = 0
        self._redis_retry_at = 0.0
        self._next_poll = 0.0  # the first iteration loads at once
        self._announced: int | None = None
        self._fresh = False  # an announcement arrived since the last load attempt

    def _connect_redis(self) -> None:
        client = connect(
            self._redis_url,
            sentinel_password=self._sentinel_password,
            socket_connect_timeout=self._redis_timeout,
            socket_timeout=max(5.0, self.poll_interval * 2),
            socket_keepalive=True,
            health_check_interval=10,
            retry=Retry(NoBackoff(), 0),  # this loop owns retries
        )
        pubsub = client.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(channel.CHANNEL)
        except RedisError:
            pubsub.close()
            client.close()
            raise
        self._pubsub = pubsub
        self._set_subscribed(True)
        if self._redis_failures:
            log.info("config watcher: Redis subscription restored")
        self._redis_failures = 0
        # Messages published while we were away are lost: check the row now.
        self._next_poll = 0.0

    def _drop_redis(self, exc: BaseException) -> None:
        if self._redis_failures == 0:
            log.warning("config watcher: Redis unavailable (%s); polling", type(exc).__name__)
        self._redis_failures += 1
        # Capped low: a refused connect is cheap, and polling covers correctness meanwhile.
        cap = min(self.backoff_cap, _REDIS_BACKOFF_CAP)
        self._redis_retry_at = time.monotonic() + _backoff(self._redis_failures, 0.2, cap)
        if self._pubsub is not None:
            with contextlib.suppress(RedisError):
                self._pubsub.close()
        self._pubsub = None
        self._set_subscribed(False)

    def _set_subscribed(self, value: bool) -> None:
        store = self._store()
        if store is not None:
            store.subscribed = value

    def _engine_or_new(self) -> Engine:
        if self._engine is None:
            self._engine = create_engine(
                self._database_url,
                pool_size=1,
                max_overflow=0,
                pool_pre_ping=True,
                pool_recycle=1800,
                connect_args={
                    "connect_timeout": self._connect_timeout,
                    "application_name": "config-watcher",
                    "options": "-c statement_timeout=5000",
                },
            )
        return self._engine

    def _sync(self, store: ConfigStore, trigger: str) -> None:
        """Poll (or load on an announcement); on failure keep the snapshot and back off."""
        try:
            with self._engine_or_new().connect() as conn:
                current = store.generation
                wanted = self._announced
                if wanted is None or wanted <= current:
                    wanted = read_generation(conn)
                if wanted > current or not store.loaded:
                    store.install(load_snapshot(conn), trigger=trigger)
                    metrics.CONFIG_RELOADS.labels(trigger=trigger, outcome="ok").inc()
        except (SQLAlchemyError, LookupError) as exc:
            if self._db_failures == 0:
                log.warning("config watcher: PostgreSQL unavailable (%s)", type(exc).__name__)
            self._db_failures += 1
            store.record_failure(type(exc).__name__)
            metrics.CONFIG_RELOADS.labels(trigger=trigger, outcome="error").inc()
            delay = _backoff(self._db_failures, self.poll_interval, self.backoff_cap)
            self._next_poll = time.monotonic() + delay
            return
        if self._db_failures:
            log.info("config watcher: PostgreSQL reachable again")
        self._db_failures = 0
        self._announced = None
        self._next_poll = time.monotonic() + self.poll_interval

    def _ensure_subscribed(self) -> None:
        # Subscribe BEFORE loading: a change committed in between is then announced to
        # us, instead of waiting for the next poll.
        if self._pubsub is None and time.monotonic() >= self._redis_retry_at:
            try:
                self._connect_redis()
            except RedisError as exc:
                self._drop_redis(exc)

    def _wait_for_message(self, timeout: float) -> bool:
        """Block up to `timeout`; True when a newer generation was announced."""
        if self._pubsub is None:
            self._stop.wait(min(timeout, max(0.0, self._redis_retry_at - time.monotonic())))
            return False
        try:
            message = self._pubsub.get_message(timeout=timeout)
        except (RedisError, OSError) as exc:
            self._drop_redis(exc)
            return False
        if not message or message.get("type") != "message":
            return False
        generation = channel.parse(message.get("data"))
        if generation is None:
            return False
        self._announced = max(generation, self._announced or 0)
        self._fresh = True
        return True

    def run(self) -> None:
        """The thread body: until stopped or the store is gone."""
        try:
            while not self._stop.is_set():
                self._ensure_subscribed()
                store = self._store()
                if store is None:
                    return
                now = time.monotonic()
                if now >= self._next_poll:
                    self._sync(store, "startup" if not store.loaded else "poll")
                elif self._fresh and (self._announced or 0) > store.generation:
                    # Writers announce only after committing, so an announcement means
                    # PostgreSQL is back: no need to sit out the poll backoff. One try per
                    # message, so a watcher that still cannot reach it does not spin.
                    self._fresh = False
                    self._sync(store, "pubsub")
                del store  # never hold the store across a blocking wait
                timeout = min(_MAX_BLOCK, max(0.0, self._next_poll - time.monotonic()))
                self._wait_for_message(timeout)
        finally:
            self._set_subscribed(False)
            if self._pubsub is not None:
                with contextlib.suppress(RedisError):
                    self._pubsub.close()
            if self._engine is not None:
                self._engine.dispose()
