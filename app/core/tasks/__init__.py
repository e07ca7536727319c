"""Celery wired through the app factory: every task runs inside the app context.

Pattern from Flask's own `examples/celery`. Broker and result backend share Redis;
the visibility timeout is set once, in both transport and backend options, above any
retry delay we schedule (celery docs: backends-and-brokers/redis). A Redis broker runs
on our own kombu transport (`broker.py`), which keeps a worker alive when Redis restarts.
"""

from __future__ import annotations

import ssl
from typing import Any, Final

from celery import Celery, Task
from flask import Flask

from app.settings import Settings

EXTENSION: Final = "celery"
#: Our transport class per broker URL scheme; any other leaves kombu's choice (amqp, ...).
_TRANSPORTS: Final = {
    "redis": "app.core.tasks.broker:Transport",
    "rediss": "app.core.tasks.broker:Transport",
    "sentinel": "app.core.tasks.broker:SentinelTransport",
}


def init_app(app: Flask, settings: Settings) -> Celery:
    """Create the Celery app bound to `app` and store it in `app.extensions`."""

    class FlaskTask(Task):  # type: ignore[type-arg]
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app: Celery = Celery(app.name, task_cls=FlaskTask)
    transport = {
        "visibility_timeout": settings.celery_visibility_timeout,
        "socket_timeout": 5,
        "socket_connect_timeout": 5,
    }
    broker, backend = settings.celery_redis()  # redis+sentinel://: app/settings/redis_url.py
    celery_app.conf.update(
        broker_url=broker.url,
        # kombu's Redis transport with the fix of app/core/tasks/broker.py (a worker
        # otherwise stops for good when Redis goes away while it holds late-ack tasks).
        broker_transport=_TRANSPORTS.get(broker.url.partition("://")[0]),
        # rediss://: verify the server's certificate (kombu's default for the scheme is
        # CERT_NONE with a warning, kombu/connection.py).
        broker_use_ssl=(
            {"ssl_cert_reqs": ssl.CERT_REQUIRED}
            if settings.broker_url.startswith("rediss://")
            else None
        ),
        # Retry forever: Celery's default (100 attempts) gives up on a long outage, and the
        # worker process would exit (celery docs, broker_connection_max_retries).
        broker_connection_max_retries=None,
        # A task running when the broker drops keeps running and acknowledges afterwards
        # (broker.py): our late-ack tasks are idempotent, cancelling them wastes work.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        result_backend=backend.url,
        broker_transport_options={**transport, **broker.transport_options},
        result_backend_transport_options={**transport, **backend.transport_options},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_always_eager=settings.celery_task_always_eager,
        task_eager_propagates=True,
        # Long AI jobs: one message per worker process at a time.
        worker_prefetch_multiplier=1,
        task_acks_late=False,  # opt in per idempotent task
        task_reject_on_worker_lost=False,
        task_track_started=True,
        result_expires=86_400,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone="UTC",
        enable_utc=True,
        imports=["app.core.tasks.builtin"],
        beat_schedule={
            "heartbeat": {"task": "sapi.system.heartbeat", "schedule": 60.0},
        },
    )
    celery_app.set_default()
    app.extensions[EXTENSION] = celery_app
    return celery_app
