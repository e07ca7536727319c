"""The watcher through Redis and PostgreSQL outages: keep the last snapshot, recover alone.

Private PostgreSQL and Redis servers (the session's are shared), stopped and restarted
on the same ports while a store watches them.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from alembic import command
from devstack import PostgresServer, RedisServer
from sqlalchemy import create_engine
from sqlmodel import Session

from app.config_store import service
from app.config_store.store import ConfigStore
from app.core.observability import metrics
from app.settings import Settings
from tests.config_store.conftest import SPECS
from tests.conftest import alembic_config

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(240)]
log = logging.getLogger(__name__)  # figures for the report: --log-cli-level=INFO


@dataclass
class Stack:
    """Private servers and a store watching them."""

    pg: PostgresServer
    redis: RedisServer
    store: ConfigStore

    def write(self) -> int:
        """Commit a new policy (announced when Redis is up); its generation."""
        engine = create_engine(self.pg.url)
        client = redis.Redis.from_url(self.redis.url, socket_connect_timeout=0.2)
        try:
            with Session(engine) as session:
                return service.upsert_config(
                    session=session,
                    kind="RateLimitPolicy",
                    name=f"o-{secrets.token_hex(3)}",
                    spec=SPECS["RateLimitPolicy"],
                    source=service.Source.admin(),
                    actor="test",
                    redis_client=client,
                ).generation
        finally:
            client.close()
            engine.dispose()

    def seen_within(self, generation: int, timeout: float) -> float:
        """Seconds until the store holds `generation`; fails after `timeout`."""
        started = time.perf_counter()
        while self.store.generation < generation:
            assert time.perf_counter() - started < timeout, self.store.last_error
            time.sleep(0.005)
        return time.perf_counter() - started


def pubsub_reloads() -> float:
    """Reloads triggered by an announcement so far (this process)."""
    return metrics.CONFIG_RELOADS.labels(trigger="pubsub", outcome="ok")._value.get()  # type: ignore[attr-defined,no-any-return]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """PostgreSQL + Redis of our own, migrated, and a started store (poll every 2 s)."""
    root: Path = tmp_path_factory.mktemp("outages")
    pg, rd = PostgresServer(root / "pg").start(), RedisServer(root / "redis").start()
    try:
        command.upgrade(alembic_config(pg.url), "head")
        settings = Settings(
            app_env="test",
            database_url=pg.url,
            redis_url=rd.url,
            config_poll_interval=2.0,
            config_retry_max_seconds=2.0,
            db_connect_timeout=1,
        )
        store = ConfigStore(settings)
        store.current()
        yield Stack(pg, rd, store)
        store.stop()
    finally:
        rd.stop()
        pg.stop()


def test_redis_down_changes_arrive_by_polling_and_pubsub_resumes_when_it_is_back(
    stack: Stack,
) -> None:
    assert stack.store.loaded and stack.store.subscribed
    fast = stack.seen_within(stack.write(), timeout=1.0)

    stack.redis.stop()
    polled = stack.seen_within(stack.write(), timeout=2.0 + 1.0)  # one poll interval + slack
    assert not stack.store.subscribed

    stack.redis.start()
    waited = 0.0
    while not stack.store.subscribed:
        assert waited < 15, "never resubscribed"
        time.sleep(0.05)
        waited += 0.05
    # The watcher polls once right after it resubscribes (announcements made while it
    # was away are lost); a write racing that poll may be picked up by it. Once a write
    # is seen, that poll is over and the next one is 2 s away.
    stack.seen_within(stack.write(), timeout=2.0 + 1.0)
    before = pubsub_reloads()
    again = stack.seen_within(stack.write(), timeout=1.0)
    # install() publishes the snapshot a moment before the reload is counted.
    deadline = time.monotonic() + 1.0
    while pubsub_reloads() < before + 1 and time.monotonic() < deadline:
        time.sleep(0.005)
    assert pubsub_reloads() == before + 1  # by announcement, not by the 2 s poll
    log.info(
        "pubsub %.1f ms; Redis down: by poll %.0f ms; resubscribed %.1f s after restart; "
        "pubsub again %.1f ms",
        fast * 1e3,
        polled * 1e3,
        waited,
        again * 1e3,
    )


def test_postgresql_down_keeps_the_last_snapshot_and_recovers_without_a_restart(
    stack: Stack,
) -> None:
    held = stack.store.current()
    stack.pg.stop()
    deadline = time.monotonic() + 10
    while stack.store.last_error is None:
        assert time.monotonic() < deadline, "the outage was never noticed"
        time.sleep(0.05)
    started = time.perf_counter()
    for _ in range(1000):
        assert stack.store.current() is held  # same object, served without waiting
    per_call = (time.perf_counter() - started) / 1000
    assert per_call < 50e-6

    stack.pg.start()
    took = stack.seen_within(stack.write(), timeout=2.0 + 2.0)  # backoff cap + slack
    assert stack.store.last_error is None and stack.store.current() is not held
    log.info(
        "PostgreSQL down: snapshot read %.2f us per call; change after restart seen in %.0f ms",
        per_call * 1e6,
        took * 1e3,
    )
