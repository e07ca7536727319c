"""Celery metrics: task outcomes from a real prefork worker, queue depth from the broker."""

from __future__ import annotations

import os
import socket
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import redis
from celery import Celery
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.ai.history.journal import Journal
from app.core.observability.celery_signals import (
    PRIORITY_SEP,
    HistoryBacklogCollector,
    QueueLengthCollector,
    queues_of,
)
from app.factory import create_app
from app.settings import Settings
from tests.core.observability.test_tracing import with_db
from tests.core.observability.trace_tasks import FLAKY_TASK
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
METRICS_REDIS_DB = 9


def test_queue_length_sums_every_priority_list_of_a_queue(redis_url: str) -> None:
    client = redis.Redis.from_url(with_db(redis_url, METRICS_REDIS_DB))
    client.delete("jobs", f"jobs{PRIORITY_SEP}3", "other")
    client.rpush("jobs", b"a", b"b")
    client.rpush(f"jobs{PRIORITY_SEP}3", b"c")
    registry = CollectorRegistry()
    registry.register(QueueLengthCollector(client, ["jobs", "other"]))

    assert registry.get_sample_value("sapi_celery_queue_length", {"queue": "jobs"}) == 3
    assert registry.get_sample_value("sapi_celery_queue_length", {"queue": "other"}) == 0
    client.delete("jobs", f"jobs{PRIORITY_SEP}3")


def test_queue_length_is_omitted_not_an_error_when_the_broker_is_down() -> None:
    port = free_port()  # nothing listens there
    dead = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2)
    registry = CollectorRegistry()
    registry.register(QueueLengthCollector(dead, ["celery"]))

    assert registry.get_sample_value("sapi_celery_queue_length", {"queue": "celery"}) is None


def test_history_backlog_counts_pending_and_in_flight_records(redis_url: str) -> None:
    client = redis.Redis.from_url(with_db(redis_url, METRICS_REDIS_DB))
    name = f"backlog-{uuid.uuid4().hex[:8]}"
    written: list[list[bytes]] = []
    journal = Journal(client, name=name, write=written.append, batch=2)
    journal.background = False
    registry = CollectorRegistry()
    registry.register(HistoryBacklogCollector(Journal(client, name=name, write=None).backlog))
    try:
        for i in range(5):
            assert journal.push({"id": i})
        assert registry.get_sample_value("sapi_ai_history_backlog") == 5

        assert journal.drain() == 5 and len(written) == 3  # batches of 2, 2, 1
        assert registry.get_sample_value("sapi_ai_history_backlog") == 0
    finally:
        client.delete(journal.pending_key, journal.consumers_key)


def test_history_backlog_is_omitted_not_an_error_when_redis_is_down() -> None:
    dead = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=0.2)
    registry = CollectorRegistry()
    registry.register(HistoryBacklogCollector(Journal(dead, name="x", write=None).backlog))

    assert registry.get_sample_value("sapi_ai_history_backlog") is None


def test_default_queue_is_scraped_when_none_is_declared(settings: Settings) -> None:
    app = create_app(settings)
    assert queues_of(app.extensions["celery"]) == ["celery"]
    app.extensions["db"].dispose()


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_prefork_worker_serves_task_outcomes_of_all_children(
    database_url: str, redis_url: str, tmp_path: Path
) -> None:
    settings = Settings(
        app_env="test", database_url=database_url, redis_url=with_db(redis_url, METRICS_REDIS_DB)
    )
    producer: Celery = create_app(settings).extensions["celery"]
    port = free_port()
    multiproc_dir = tmp_path / "prometheus"
    multiproc_dir.mkdir()
    (multiproc_dir / "counter_999999.db").write_bytes(b"\0" * 64)
    nodename = f"metrics-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
    env = child_env(
        APP_ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=settings.redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        METRICS_PORT=str(port),
    )
    worker = ManagedProcess(
        name="celery worker (prefork, metrics)",
        args=[sys.executable, "-m", "celery", "-A", "app.worker:celery_app", "worker",
              "--pool=prefork", "--concurrency=2", f"--hostname={nodename}",
              "--include=tests.core.observability.trace_tasks",
              "--without-mingle", "--without-gossip", "--without-heartbeat"],
        env=env,
        log_path=tmp_path / "worker.log",
        cwd=ROOT,
        stop_timeout=20,
    ).start()  # fmt: skip
    try:
        wait_for(
            lambda: (
                worker.check_alive() is None
                and any(nodename in r for r in producer.control.ping([nodename], timeout=0.25))
            ),
            timeout=90,
            interval=0.2,
            what="the worker",
        )
        results = [producer.send_task("sapi.system.ping", args=[str(i)]) for i in range(12)]
        assert [r.get(timeout=60)["pong"] for r in results] == [str(i) for i in range(12)]
        assert producer.send_task(FLAKY_TASK, args=["k"]).get(timeout=60) == "k"
        revoked_id = str(uuid.uuid4())
        producer.control.revoke(revoked_id, destination=[nodename], reply=True, timeout=5)
        producer.send_task("sapi.system.ping", args=["never"], task_id=revoked_id)

        def scrape() -> str:
            return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text

        revoked_line = 'sapi_celery_tasks_total{outcome="revoked",task="sapi.system.ping"} 1.0'
        wait_for(lambda: revoked_line in scrape(), timeout=30, what="the revoked task metric")
        text = scrape()
    finally:
        worker.stop()

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    ok = ("sapi_celery_tasks_total", (("outcome", "success"), ("task", "sapi.system.ping")))
    assert samples[ok] == 12
    duration = ("sapi_celery_task_duration_seconds_count", (("task", "sapi.system.ping"),))
    assert samples[duration] == 12
    assert samples[("sapi_celery_queue_length", (("queue", "celery"),))] == 0
    assert samples[("sapi_ai_history_backlog", ())] >= 0  # registered, Redis answered
    flaky = (("task", FLAKY_TASK),)
    assert samples[("sapi_celery_task_retries_total", flaky)] == 1
    assert samples[("sapi_celery_tasks_total", (("outcome", "retry"), *flaky))] == 1
    assert samples[("sapi_celery_tasks_total", (("outcome", "success"), *flaky))] == 1
    revoked = (("outcome", "revoked"), ("task", "sapi.system.ping"))
    assert samples[("sapi_celery_tasks_total", revoked)] == 1
    assert not (multiproc_dir / "counter_999999.db").exists()
