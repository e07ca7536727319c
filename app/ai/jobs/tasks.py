"""Celery tasks of the AI gateway: the job runner and beat's housekeeping.

`sapi.ai.run_job` is `acks_late` with `task_reject_on_worker_lost`: the message is
acknowledged only after the attempt ended (success, scheduled retry or dead letter), so
a worker killed mid-job (SIGKILL, OOM killer) leaves the message to be delivered again.
That is safe because the task is idempotent (app/ai/jobs/runs.py: claim tokens,
result recorded once) and bounded: it counts redeliveries itself and dead-letters a job
that keeps killing its worker (celery discussion #8969). Retries are Celery retries with
exponential backoff and full jitter, always shorter than the broker's visibility
timeout (Settings refuses otherwise).
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, Final

from celery import Celery, Task, shared_task
from flask import current_app
from sqlalchemy import delete
from sqlmodel import col

from app.ai.dead_letters import service as dead_letters
from app.ai.extension import gateway
from app.ai.history import records as ai_history
from app.ai.jobs import runs as job_runs
from app.ai.jobs import service as jobs
from app.ai.jobs.models import FINISHED, AIJob, IdempotencyKey
from app.core.db import session_scope
from app.core.models import utcnow
from app.settings import Settings

log = logging.getLogger("structured_api.jobs")

RUN_JOB: Final = jobs.RUN_JOB
PURGE_TASK: Final = "sapi.ai.purge_expired"
SWEEP_TASK: Final = "sapi.ai.requeue_stale_jobs"


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


@shared_task(
    bind=True,
    name=RUN_JOB,
    acks_late=True,
    reject_on_worker_lost=True,
    max_retries=None,  # job_runs decides (JOB_MAX_RETRIES); Celery only schedules
    ignore_result=True,
)
def run_job(self: Task, job_id: str) -> str:  # type: ignore[type-arg]
    """Run one delivery of an AI job; see the module docstring."""
    settings = _settings()
    attempt = int(self.request.retries or 0) + 1
    task_id = str(self.request.id or job_id)
    with session_scope() as session:
        claimed = job_runs.claim(
            session=session, job_id=uuid.UUID(job_id), attempt=attempt, settings=settings
        )
        if claimed is None:
            return "skipped"
        try:
            return job_runs.run(
                session=session,
                claimed=claimed,
                settings=settings,
                gateway=gateway(),
                task_id=task_id,
            )
        except job_runs.RetryLater as later:
            log.info(
                "job retry scheduled",
                extra={"job_id": job_id, "attempt": attempt, "countdown": later.countdown},
            )
            raise self.retry(countdown=later.countdown, exc=later) from None


@shared_task(name=PURGE_TASK, ignore_result=True)
def purge_expired() -> dict[str, int]:
    """Apply the retention settings: history, finished jobs, idempotency keys, dead letters."""
    settings = _settings()
    with session_scope() as session:
        history = ai_history.purge(
            session=session, older_than_days=settings.ai_history_retention_days
        )
        cutoff = utcnow() - timedelta(days=settings.job_retention_days)
        old_jobs = session.exec(
            delete(AIJob).where(col(AIJob.status).in_(FINISHED), col(AIJob.updated_at) < cutoff)
        )
        keys = session.exec(delete(IdempotencyKey).where(col(IdempotencyKey.expires_at) < utcnow()))
        letters = dead_letters.purge(
            session=session, older_than_days=settings.dead_letter_retention_days
        )
        counts = {
            "history": history,
            "jobs": int(old_jobs.rowcount or 0),
            "idempotency_keys": int(keys.rowcount or 0),
            "dead_letters": letters,
        }
    log.info("AI retention applied", extra=counts)
    return counts


@shared_task(name=SWEEP_TASK, ignore_result=True)
def requeue_stale_jobs() -> int:
    """Send again jobs whose message may be lost (publish failed, broker lost it)."""
    settings = _settings()
    celery: Celery = current_app.extensions["celery"]
    sent = 0
    with session_scope() as session:
        for job in jobs.stale_jobs(session=session, settings=settings):
            job.enqueued_at = utcnow()
            session.add(job)
            session.commit()
            # A duplicate of a message still queued is harmless: claims make it a no-op.
            if jobs.publish(celery=celery, job=job, task_id=str(uuid.uuid4())):
                sent += 1
    if sent:
        log.warning("re-sent %d stale AI jobs", sent)
    return sent


def schedule_tasks(celery_app: Celery, settings: Settings) -> None:
    """Beat entries of the AI tasks (the tasks register when this module is imported)."""
    celery_app.conf.beat_schedule[PURGE_TASK] = {"task": PURGE_TASK, "schedule": 3600.0}
    celery_app.conf.beat_schedule[SWEEP_TASK] = {
        "task": SWEEP_TASK,
        "schedule": max(10.0, min(300.0, settings.job_requeue_after_seconds / 3)),
    }


def task_names() -> tuple[str, ...]:
    """Names of the tasks defined here."""
    return (RUN_JOB, PURGE_TASK, SWEEP_TASK)


__all__: list[Any] = ["purge_expired", "requeue_stale_jobs", "run_job", "schedule_tasks"]
