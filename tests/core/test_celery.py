"""Celery against a real worker process on the session's PostgreSQL and Redis.

Eager mode proves nothing about serialization, the broker or the app context a worker
builds, so these tests start `celery -A app.worker:celery_app worker` for real.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery
from flask import Flask
from sqlalchemy import Engine

from app.core.tasks import EXTENSION
from app.core.tasks import init_app as init_celery
from app.core.tasks.builtin import HEARTBEAT_KEY
from app.factory import create_app
from app.settings import Settings
from tests.support.processes import (
    CeleryWorker,
    celery_worker,
    child_env,
    group_members,
    wait_for,
)

# The per-test `app` fixture flushes the session Redis database before each test; the
# workers here live for a whole module, so their broker and keys use a database of their own.
CELERY_REDIS_DB = 7
TASK_TIMEOUT = 30.0

pytestmark = pytest.mark.timeout(180)


def with_db(url: str, db: int) -> str:
    """`url` pointing at Redis database `db`."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{db}"))


@pytest.fixture(scope="module")
def celery_settings(database_url: str, redis_url: str, migrated_engine: Engine) -> Settings:
    """Settings shared by the worker process and the test process that sends tasks."""
    return Settings(
        app_env="test", database_url=database_url, redis_url=with_db(redis_url, CELERY_REDIS_DB)
    )


@pytest.fixture(scope="module")
def producer(celery_settings: Settings) -> Celery:
    """The Celery app of a test-side Flask app: sends tasks, reads results."""
    celery_app: Celery = create_app(celery_settings).extensions[EXTENSION]
    return celery_app


@pytest.fixture(scope="module")
def broker(celery_settings: Settings) -> Iterator[redis.Redis]:
    """A plain client on the workers' Redis database, emptied before and after the module."""
    client = redis.Redis.from_url(celery_settings.redis_url)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment of a worker process on the same PostgreSQL and Redis as `settings`."""
    env = child_env(
        APP_ENV="test",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        LOG_JSON="true",
    )
    for inherited in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "CELERY_TASK_ALWAYS_EAGER"):
        env.pop(inherited, None)
    return env


@pytest.fixture(scope="module", params=["solo", "prefork"])
def worker(
    request: pytest.FixtureRequest,
    celery_settings: Settings,
    producer: Celery,
    broker: redis.Redis,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[CeleryWorker]:
    """A real worker per pool: solo (no fork) and prefork (app state must survive fork)."""
    pool: str = request.param
    log_dir = tmp_path_factory.mktemp(f"celery-{pool}")
    with celery_worker(producer, env=worker_env(celery_settings), log_dir=log_dir, pool=pool) as w:
        yield w


@pytest.mark.slow
def test_worker_answers_within_45_seconds_of_spawning(worker: CeleryWorker) -> None:
    # 9-22 s measured on a 2-core machine at load 3-6, nearly all of it importing the app
    # (4.5 s of CPU); mingle, gossip and heartbeats are off so nothing else waits.
    assert worker.startup_seconds < 45, worker.process.tail()


@pytest.mark.slow
def test_ping_task_round_trips_through_worker_and_touches_postgresql(
    worker: CeleryWorker, producer: Celery
) -> None:
    started = time.time()
    result = producer.send_task("sapi.system.ping", args=["hello"])
    value = result.get(timeout=TASK_TIMEOUT)

    assert value["pong"] == "hello"
    # The timestamp comes from PostgreSQL's now(), reached through the app context's session.
    db_time = datetime.fromisoformat(value["db_time"])
    assert db_time.tzinfo is not None
    assert abs(db_time.timestamp() - started) < 60
    assert result.status == "SUCCESS"


@pytest.mark.slow
def test_ping_tasks_sent_in_a_burst_all_complete(worker: CeleryWorker, producer: Celery) -> None:
    results = [producer.send_task("sapi.system.ping", args=[f"n{i}"]) for i in range(20)]

    assert [r.get(timeout=TASK_TIMEOUT)["pong"] for r in results] == [f"n{i}" for i in range(20)]


def test_beat_schedule_runs_heartbeat_every_minute(producer: Celery) -> None:
    entry = producer.conf.beat_schedule["heartbeat"]

    assert entry["task"] == "sapi.system.heartbeat"
    assert entry["schedule"] == 60.0
    assert entry["task"] in producer.tasks


@pytest.mark.slow
def test_worker_registers_every_scheduled_task(worker: CeleryWorker, producer: Celery) -> None:
    registered = producer.control.inspect(destination=[worker.nodename], timeout=5).registered()

    assert registered is not None, worker.process.tail()
    names = set(registered[worker.nodename])
    scheduled = {entry["task"] for entry in producer.conf.beat_schedule.values()}
    assert scheduled <= names
    assert "sapi.system.ping" in names


@pytest.mark.slow
def test_heartbeat_run_by_worker_sets_redis_key(
    worker: CeleryWorker, producer: Celery, broker: redis.Redis
) -> None:
    broker.delete(HEARTBEAT_KEY)
    before = time.time()

    producer.send_task(producer.conf.beat_schedule["heartbeat"]["task"])
    wait_for(
        lambda: broker.exists(HEARTBEAT_KEY) == 1,
        timeout=TASK_TIMEOUT,
        what="the heartbeat key",
    )

    raw = cast(bytes, broker.get(HEARTBEAT_KEY))
    assert before - 1 <= float(raw) <= time.time() + 1
    assert 0 < cast(int, broker.ttl(HEARTBEAT_KEY)) <= 600


@pytest.mark.slow
def test_worker_log_shows_no_errors_so_far(worker: CeleryWorker) -> None:
    worker.process.check_alive()
    log = worker.process.output()
    assert "Traceback" not in log, worker.process.tail()


@pytest.mark.slow
def test_prefork_worker_stops_on_sigterm_leaving_no_process(
    celery_settings: Settings, producer: Celery, broker: redis.Redis, tmp_path: Path
) -> None:
    with celery_worker(
        producer, env=worker_env(celery_settings), log_dir=tmp_path, pool="prefork", concurrency=2
    ) as running:
        pgid = running.process.pid
        assert len(group_members(pgid)) >= 3  # the main process and two pool children
        assert producer.send_task("sapi.system.ping", args=["last"]).get(timeout=TASK_TIMEOUT)

        took = running.process.stop()  # SIGTERM: Celery's warm shutdown

    assert took < 15
    assert running.process.proc is not None
    assert running.process.proc.returncode == 0, running.process.tail()
    assert group_members(pgid) == []
    assert "Traceback" not in running.process.output()


@pytest.mark.parametrize(
    ("url", "transport", "tls"),
    [
        ("redis://redis.example:6379/0", "app.core.tasks.broker.Transport", None),
        # Our transport class replaces the scheme kombu would read TLS from: the setting
        # must turn TLS on, verifying the certificate (kombu's own default is CERT_NONE).
        ("rediss://redis.example:6380/0", "app.core.tasks.broker.Transport", ssl.CERT_REQUIRED),
        ("amqp://guest@rabbit.example//", "kombu.transport.pyamqp.Transport", None),
    ],
)
def test_a_redis_broker_runs_on_the_transport_that_survives_restarts(
    url: str, transport: str, tls: ssl.VerifyMode | None
) -> None:
    celery_app = init_celery(Flask("t"), Settings(app_env="test", celery_broker_url=url))
    connection = celery_app.connection_for_write()

    kind = type(connection.transport)
    assert f"{kind.__module__}.{kind.__qualname__}" == transport
    assert (connection.ssl or {}).get("ssl_cert_reqs") == tls
