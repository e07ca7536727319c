"""Celery task metrics from signals, queue depth at scrape time, and the worker's scrape port.

Signals fire in the process that runs the task (the prefork child), which writes to the
shared multiprocess directory; the worker's main process serves `/metrics` on
`METRICS_PORT` and sums the children (multiproc.py). Queue depth is read with `LLEN`
when Prometheus scrapes, so it costs nothing between scrapes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Final

import redis
from celery import Celery, signals
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from app.core.observability import metrics, multiproc
from app.settings import Settings

log = logging.getLogger(__name__)

UNKNOWN_TASK: Final = "unknown"
# kombu's Redis transport stores priority levels as extra lists: "<queue>\x06\x16<n>"
# (kombu/transport/redis.py, PRIORITY_STEPS / QueueHelper).
PRIORITY_SEP: Final = "\x06\x16"
DEFAULT_PRIORITY_STEPS: Final = (0, 3, 6, 9)
_OUTCOME_BY_STATE: Final = {"SUCCESS": "success", "FAILURE": "failure", "RETRY": "retry"}

_started: dict[str, float] = {}
_lock = threading.Lock()
_connected = False


def _task_name(task: Any) -> str:
    return str(getattr(task, "name", None) or UNKNOWN_TASK)


def _on_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        with _lock:
            _started[task_id] = time.perf_counter()


def _on_postrun(
    task_id: str | None = None, task: Any = None, state: str | None = None, **_: Any
) -> None:
    name = _task_name(task)
    with _lock:
        started = _started.pop(task_id or "", None)
    if started is not None:
        metrics.CELERY_TASK_DURATION.labels(name).observe(time.perf_counter() - started)
    metrics.CELERY_TASKS.labels(name, _OUTCOME_BY_STATE.get(state or "", "failure")).inc()


def _request_task_name(request: Any) -> str:
    # task_retry passes the task's Context (`.task` is the name); task_revoked passes the
    # worker's Request (`.task_name` is the name, `.task` the Task object).
    name = getattr(request, "task_name", None) or getattr(request, "task", None)
    if isinstance(name, str):
        return name
    return str(getattr(name, "name", None) or UNKNOWN_TASK)


def _on_retry(request: Any = None, **_: Any) -> None:
    metrics.CELERY_TASK_RETRIES.labels(_request_task_name(request)).inc()


def _on_revoked(request: Any = None, **_: Any) -> None:
    metrics.CELERY_TASKS.labels(_request_task_name(request), "revoked").inc()


def _on_rejected(message: Any = None, **_: Any) -> None:
    headers = getattr(message, "headers", None) or {}
    metrics.CELERY_TASKS.labels(str(headers.get("task") or UNKNOWN_TASK), "rejected").inc()


def _on_process_shutdown(pid: int | None = None, **_: Any) -> None:
    if pid is not None:
        multiproc.mark_dead(pid)


def connect_task_signals() -> None:
    """Record task outcomes, retries and durations (idempotent)."""
    global _connected
    if _connected:
        return
    signals.task_prerun.connect(_on_prerun, weak=False)
    signals.task_postrun.connect(_on_postrun, weak=False)
    signals.task_retry.connect(_on_retry, weak=False)
    signals.task_revoked.connect(_on_revoked, weak=False)
    signals.task_rejected.connect(_on_rejected, weak=False)
    signals.worker_process_shutdown.connect(_on_process_shutdown, weak=False)
    _connected = True


class QueueLengthCollector(Collector):
    """`sapi_celery_queue_length{queue}`: messages waiting in each broker queue."""

    def __init__(self, client: redis.Redis, queues: Iterable[str]) -> None:
        self.client = client
        self.queues = tuple(queues)

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """LLEN every priority list of every queue in one pipeline."""
        family = GaugeMetricFamily(
            metrics.CELERY_QUEUE_LENGTH_NAME,
            "Messages waiting in a Celery broker queue (all priorities).",
            labels=["queue"],
        )
        keys = [
            (queue, queue if step == 0 else f"{queue}{PRIORITY_SEP}{step}")
            for queue in self.queues
            for step in DEFAULT_PRIORITY_STEPS
        ]
        try:
            pipe = self.client.pipeline(transaction=False)
            for _, key in keys:
                pipe.llen(key)
            lengths = pipe.execute()
        except redis.RedisError as exc:
            # A scrape must not fail because the broker is down: omit the series instead
            # (absent() in an alert can catch that), and say why once per scrape.
            log.warning("queue length unavailable: %s", type(exc).__name__)
            return
        totals: dict[str, int] = dict.fromkeys(self.queues, 0)
        for (queue, _), length in zip(keys, lengths, strict=True):
            totals[queue] += int(length)
        for queue, total in totals.items():
            family.add_metric([queue], total)
        yield family


class HistoryBacklogCollector(Collector):
    """`sapi_ai_history_backlog`: AI history records in Redis not yet in PostgreSQL.

    Pending plus every drainer's in-flight batch (app/ai/history/journal.py). It grows while
    PostgreSQL is down or no drainer runs; the beat task `sapi.ai.drain_history` and every
    API process drain it.
    """

    def __init__(self, backlog: Callable[[], int]) -> None:
        self.backlog = backlog

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Count at scrape time; omitted (not an error) when Redis does not answer."""
        try:
            value = self.backlog()
        except redis.RedisError as exc:
            log.warning("AI history backlog unavailable: %s", type(exc).__name__)
            return
        yield GaugeMetricFamily(
            metrics.AI_HISTORY_BACKLOG_NAME,
            "AI history records queued in Redis and not yet written to PostgreSQL.",
            value=value,
        )


def queues_of(celery_app: Celery) -> list[str]:
    """Names of the queues the app routes to (the default queue when none are declared)."""
    declared = celery_app.conf.task_queues or ()
    names = [q.name for q in declared] or [celery_app.conf.task_default_queue]
    return sorted(set(names))


def start_worker_metrics_server(
    settings: Settings, celery_app: Celery, collectors: Iterable[Collector] = ()
) -> int | None:
    """Wipe the multiprocess dir and serve `/metrics` for the whole worker; returns the port.

    `collectors` add scrape-time figures of the features (the AI history backlog: the
    worker entry point passes it, since core imports no feature).
    """
    if not settings.metrics_enabled:
        return None
    path = multiproc.directory()
    if path is not None:
        multiproc.wipe(path)
    registry = multiproc.scrape_registry()
    client = settings.redis_client(
        settings.broker_url, socket_timeout=1.0, socket_connect_timeout=1.0
    )
    registry.register(QueueLengthCollector(client, queues_of(celery_app)))
    for collector in collectors:
        registry.register(collector)
    try:
        server, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_address, registry=registry
        )
    except OSError as exc:
        # A busy port must not stop task processing; the scrape target shows as down.
        log.error("worker metrics server not started on port %d: %s", settings.metrics_port, exc)
        return None
    port: int = server.server_port
    log.info("worker metrics on %s:%d", settings.metrics_address, port)
    return port
