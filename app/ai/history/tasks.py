"""Beat's sweep of the history journal, and the replay target of refused history rows.

`sapi.ai.drain_history` runs every `AI_HISTORY_LEASE_SECONDS`: it queues again what a
stopped process was writing (its lease expired) and writes whatever waits, so history
never depends on the process that took the request staying alive (docs/ai.md).
"""

from __future__ import annotations

import json
import time
from typing import Any, Final

from celery import Celery, shared_task
from flask import current_app

from app.ai.history import queue as history_queue
from app.ai.history import records as ai_history
from app.core.db import session_scope
from app.settings import Settings

DRAIN_TASK: Final = "sapi.ai.drain_history"


@shared_task(name=DRAIN_TASK, ignore_result=True)
def drain_history() -> int:
    """Recover expired in-flight batches, then write what is queued (bounded in time)."""
    journal = history_queue.journal(current_app)
    journal.recover()
    return journal.drain(deadline=time.monotonic() + journal.lease)


@shared_task(name=history_queue.WRITE_TASK, ignore_result=True)
def write_history(record: dict[str, Any]) -> None:
    """Write one journaled history record (dead-letter replay)."""
    with session_scope() as session:
        ai_history.insert_json(session, json.dumps([record]))


def schedule(celery_app: Celery, settings: Settings) -> None:
    """The beat entry of the sweep (the tasks register when this module is imported)."""
    celery_app.conf.beat_schedule[DRAIN_TASK] = {
        "task": DRAIN_TASK,
        "schedule": settings.ai_history_lease_seconds,
    }
