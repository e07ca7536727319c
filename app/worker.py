"""Celery entry point: `celery -A app.worker:celery_app worker|beat`."""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.signals import beat_init, worker_init, worker_process_init, worker_process_shutdown

from app.ai.history import queue as history_queue
from app.core import db, redis
from app.core.observability import celery_signals, tracing
from app.factory import create_app

# The tracer provider is built in the process that runs tasks, never in a parent that
# forks afterwards (OpenTelemetry's fork-process model, docs/observability.md): see the
# signals below.
tracing.defer_provider()
flask_app = create_app()
celery_app: Celery = flask_app.extensions["celery"]
settings = flask_app.extensions["settings"]
# The config-generation metric tells api, worker and operator processes apart.
flask_app.extensions["config_store"].role = "worker"
if settings.metrics_enabled:
    celery_signals.connect_task_signals()


def _forks(sender: Any) -> bool:
    """True when the worker's pool runs tasks in forked children (prefork)."""
    pool = getattr(sender, "pool_cls", None)
    name = pool if isinstance(pool, str) else getattr(pool, "__module__", "")
    return "prefork" in str(name) or str(name) == "processes"


@worker_init.connect
def _on_worker_init(sender: Any = None, **_: object) -> None:
    # Main process, before any child exists: wipe the multiprocess dir and serve /metrics
    # for the whole worker; solo/threads pools run tasks here, so trace from here too.
    backlog = celery_signals.HistoryBacklogCollector(
        history_queue.backlog_reader(
            settings.redis_url, sentinel_password=settings.sentinel_password()
        )
    )
    celery_signals.start_worker_metrics_server(settings, celery_app, [backlog])
    if not _forks(sender):
        tracing.install_provider(settings)


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    # Prefork children must not share the parent's sockets (SQLAlchemy pooling docs).
    db.dispose_after_fork(flask_app)
    redis.reset_after_fork(flask_app)
    tracing.install_provider(settings)


@beat_init.connect
def _on_beat_init(**_: object) -> None:
    # Beat never forks: its publish spans start the traces of scheduled tasks.
    tracing.install_provider(settings)


@worker_process_shutdown.connect
def _flush_spans(**_: object) -> None:
    tracing.shutdown()
