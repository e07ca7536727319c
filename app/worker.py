"""Celery entry point: `celery -A app.worker:celery_app worker|beat`."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_process_init

from app import create_app
from app.core import db, redis

flask_app = create_app()
celery_app: Celery = flask_app.extensions["celery"]


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    # Prefork children must not share the parent's sockets (SQLAlchemy pooling docs).
    db.dispose_after_fork(flask_app)
    redis.reset_after_fork(flask_app)
