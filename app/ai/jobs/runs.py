"""The worker's side of a job: claim a delivery, run it, record the outcome exactly once.

Each delivery claims the job row under a fresh token (`SELECT ... FOR UPDATE`), which
also counts it: a delivery of an attempt already seen is a *redelivery* (the worker
running it was lost: SIGKILL, OOM, node gone), and too many of them dead-letter the job
instead of looping forever (celery discussion #8969). The provider call runs without any
lock held; afterwards the result, the history row and the status change commit in one
transaction, and only if the token is still ours, so a stale delivery that finishes
late records nothing. Tokens are settled after that commit, by the winner only.
"""

from __future__ import annotations

import contextlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from sqlmodel import Session, select

from app.ai.dead_letters import service as dead_letters
from app.ai.gateway import Gateway
from app.ai.generate import Call, complete, owner_of, record_success
from app.ai.history import records as ai_history
from app.ai.jobs.models import (
    CANCELLED,
    DEAD,
    FAILED,
    FINISHED,
    QUEUED,
    RETRYING,
    RUNNING,
    SUCCEEDED,
    AIJob,
)
from app.ai.jobs.service import RUN_JOB, caller_from, reservation_from
from app.ai.models import OUTCOME_ERROR, GenerateBody
from app.ai.retry import backoff
from app.core.errors import ApiError, ErrorCode
from app.core.models import utcnow
from app.core.observability import metrics
from app.ratelimit.tokens import settle
from app.settings import Settings

log = logging.getLogger("structured_api.jobs")

#: Failures worth another attempt later: the provider side or a dependency was down.
RETRYABLE_CODES: Final = frozenset(
    {
        ErrorCode.AI_PROVIDER_UNAVAILABLE,
        ErrorCode.AI_PROVIDER_TIMEOUT,
        ErrorCode.AI_PROVIDER_ERROR,
        ErrorCode.DB_CONNECTION_ERROR,
        ErrorCode.SYS_DEPENDENCY_UNAVAILABLE,
        ErrorCode.RATE_LIMITER_UNAVAILABLE,
        ErrorCode.SYS_INTERNAL_ERROR,
    }
)


class RetryLater(Exception):
    """The attempt failed retryably; the task should retry after `countdown` seconds."""

    def __init__(self, countdown: float, error: dict[str, Any]) -> None:
        self.countdown = countdown
        self.error = error
        super().__init__(f"retry in {countdown:.1f}s: {error.get('code')}")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery's hold on a job."""

    job_id: uuid.UUID
    token: str
    attempt: int
    redeliveries: int
    caller: dict[str, Any]
    request: dict[str, Any]
    reservation: dict[str, Any] | None
    traceparent: str | None
    path: str


def _lock(session: Session, job_id: uuid.UUID) -> AIJob | None:
    return session.exec(select(AIJob).where(AIJob.id == job_id).with_for_update()).first()


def claim(
    *, session: Session, job_id: uuid.UUID, attempt: int, settings: Settings
) -> Claimed | None:
    """Take the job for this delivery; None when there is nothing (left) to do."""
    job = _lock(session, job_id)
    if job is None or job.status in FINISHED:
        session.rollback()
        return None
    if job.cancel_requested:
        _finish_cancelled(session, job)
        return None
    redelivered = job.status == RUNNING and job.attempt == attempt
    job.redeliveries = job.redeliveries + 1 if redelivered else 0
    job.deliveries += 1
    job.attempt = attempt
    job.status = RUNNING
    job.delivery_token = uuid.uuid4().hex
    job.lease_expires_at = utcnow() + timedelta(seconds=settings.ai_request_deadline + 60)
    job.started_at = job.started_at or utcnow()
    session.add(job)
    session.commit()
    return Claimed(
        job.id,
        job.delivery_token,
        attempt,
        job.redeliveries,
        dict(job.caller),
        dict(job.request),
        dict(job.reservation) if job.reservation else None,
        job.traceparent,
        job.path,
    )


def _finish_cancelled(session: Session, job: AIJob) -> None:
    reservation = reservation_from(job.reservation)
    job.status, job.finished_at, job.reservation, job.lease_expires_at = (
        CANCELLED,
        utcnow(),
        None,
        None,
    )
    session.add(job)
    session.commit()
    if reservation is not None:
        settle(reservation, 0)
    metrics.AI_JOBS.labels(CANCELLED).inc()


def _mine(session: Session, claimed: Claimed) -> AIJob | None:
    """The locked job if this delivery still holds it (else rolls back, returns None)."""
    job = _lock(session, claimed.job_id)
    if job is None or job.delivery_token != claimed.token or job.status != RUNNING:
        session.rollback()
        log.info("job %s: delivery superseded, result discarded", claimed.job_id)
        return None
    return job


@contextlib.contextmanager
def trace_context(traceparent: str | None) -> Iterator[None]:
    """Continue the submitting request's trace when the task carries none of its own.

    With Celery instrumented on both sides the context arrives in the message headers
    already; replays and sweeper re-sends do not carry it, the job row does.
    """
    if not traceparent or trace.get_current_span().get_span_context().is_valid:
        yield
        return
    token = otel_context.attach(propagate.extract({"traceparent": traceparent}))
    try:
        yield
    finally:
        otel_context.detach(token)


def _error_of(exc: BaseException) -> dict[str, Any]:
    if isinstance(exc, ApiError):
        return {"code": exc.code.value, "message": exc.message, "details": exc.details}
    return {"code": ErrorCode.SYS_INTERNAL_ERROR.value, "message": type(exc).__name__}


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, ApiError) or exc.code in RETRYABLE_CODES


def run(
    *,
    session: Session,
    claimed: Claimed,
    settings: Settings,
    gateway: Gateway,
    task_id: str,
) -> str:
    """Run a claimed attempt; returns the job's new status, or raises `RetryLater`."""
    if claimed.redeliveries > settings.job_max_redeliveries:
        lost = RuntimeError(
            f"delivered {claimed.redeliveries + 1} times without finishing (worker lost)"
        )
        return _give_up(
            session, claimed, lost, settings, task_id=task_id, dead=True, error_type="WorkerLost"
        )
    body = GenerateBody.model_validate(claimed.request)
    reservation = reservation_from(claimed.reservation)
    with trace_context(claimed.traceparent):
        try:
            call = Call(
                caller_from(claimed.caller),
                body,
                settings,
                gateway,
                path=claimed.path,
                job_id=claimed.job_id,
                reservation=reservation,
            )
            call.reserve()
            result = complete(call)
        except Exception as exc:
            if _retryable(exc) and claimed.attempt <= settings.job_max_retries:
                return _retry_later(session, claimed, exc, settings)
            return _give_up(session, claimed, exc, settings, task_id=task_id, dead=_retryable(exc))
        job = _mine(session, claimed)
        if job is None:
            return "superseded"
        public = record_success(call=call, result=result, session=session)
        job.status = CANCELLED if job.cancel_requested else SUCCEEDED
        job.result = public.model_dump(mode="json")
        job.generation_id, job.error = public.id, None
        job.finished_at, job.lease_expires_at, job.reservation = utcnow(), None, None
        session.add(job)
        session.commit()
    call.settle(public.usage.total_tokens)
    metrics.AI_JOBS.labels(job.status).inc()
    return job.status


def _retry_later(session: Session, claimed: Claimed, exc: Exception, settings: Settings) -> str:
    countdown = backoff(
        claimed.attempt - 1,
        base=settings.job_retry_base_seconds,
        cap=settings.job_retry_max_seconds,
    )
    job = _mine(session, claimed)
    if job is None:
        return "superseded"
    job.status, job.error = RETRYING, _error_of(exc)
    job.lease_expires_at = None
    # The sweeper's clock starts when the retry is due, not now.
    job.enqueued_at = utcnow() + timedelta(seconds=countdown)
    session.add(job)
    session.commit()
    raise RetryLater(countdown, _error_of(exc))


def _give_up(
    session: Session,
    claimed: Claimed,
    exc: BaseException,
    settings: Settings,
    *,
    task_id: str,
    dead: bool,
    error_type: str | None = None,
) -> str:
    """Final failure: job `dead` (+ dead letter) or `failed`, history row, refund."""
    job = _mine(session, claimed)
    if job is None:
        return "superseded"
    error = _error_of(exc)
    job.status, job.error = (DEAD if dead else FAILED), error
    job.finished_at, job.lease_expires_at = utcnow(), None
    reservation = reservation_from(job.reservation)
    job.reservation = None
    session.add(job)
    caller = caller_from(claimed.caller)
    body = GenerateBody.model_validate(claimed.request)
    ai_history.record(
        session=session,
        settings=settings,
        owner=owner_of(caller),
        model=body.model or "default",
        provider=None,
        outcome=OUTCOME_ERROR,
        prompt=body.prompt or "\n".join(m.content for m in body.messages or ()),
        response=None,
        error_code=error["code"],
        attempts=list(error.get("details", {}).get("attempts", [])),
        job_id=claimed.job_id,
        trace_id=job.trace_id,
    )
    if dead:
        kind, text = dead_letters.error_text(exc)
        dead_letters.record(
            session=session,
            task_name=RUN_JOB,
            task_id=task_id,
            args=[str(claimed.job_id)],
            kwargs={},
            error_type=error_type or (error["code"] if isinstance(exc, ApiError) else kind),
            error_message=f"{error['code']}: {error['message']}\n{error.get('details', '')}"
            if isinstance(exc, ApiError)
            else text,
            attempts=claimed.attempt,
            subject=f"ai_job:{claimed.job_id}",
        )
    session.commit()
    if reservation is not None:
        settle(reservation, 0)
    metrics.AI_JOBS.labels(job.status).inc()
    return job.status


@dead_letters.replay_hook(RUN_JOB)
def _reset_for_replay(session: Session, args: list[Any], kwargs: dict[str, Any]) -> None:  # noqa: ARG001
    """Put a dead job back in the queue state (budget is reserved again when it runs)."""
    job = _lock(session, uuid.UUID(str(args[0])))
    if job is None:
        return
    job.status, job.error, job.result = QUEUED, None, None
    job.attempt, job.redeliveries, job.delivery_token = 0, 0, None
    job.finished_at, job.lease_expires_at, job.cancel_requested = None, None, False
    job.reservation, job.enqueued_at = None, utcnow()
    session.add(job)
