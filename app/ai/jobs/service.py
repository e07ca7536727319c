"""Background AI jobs: submit (with Idempotency-Key), read, cancel, and the worker's side.

Submission commits the job row first and publishes the Celery message after, so a
worker never looks for a row that is not there yet; if publishing fails the row stays
`queued` and beat's sweeper (`sapi.ai.requeue_stale_jobs`) sends it again: a job can be
late, not lost. Duplicate messages are harmless: every delivery claims the row
(`claim`), and only the delivery holding the latest claim may record the result
(`finish`), in the same transaction as its history row.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from celery import Celery
from opentelemetry import propagate
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from app.ai.generate import Call, current_trace_id, owner_of
from app.ai.jobs.models import (
    CANCELLED,
    FINISHED,
    QUEUED,
    RETRYING,
    RUNNING,
    AIJob,
    IdempotencyKey,
    JobPublic,
)
from app.ai.tokens import reservation_for
from app.auth.caller import Caller
from app.core.errors import ApiError, Conflict, ErrorCode, NotFound, ValidationFailed
from app.core.models import utcnow
from app.ratelimit.tokens import Reservation, reserve_tokens, settle
from app.settings import Settings

log = logging.getLogger("structured_api.jobs")

RUN_JOB: Final = "sapi.ai.run_job"
JOBS_PATH: Final = "/v1/ai/jobs"
RESOURCE: Final = "ai_job"
TRACEPARENT: Final = "traceparent"


def body_hash(body: dict[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a request body (key order does not matter)."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def caller_dict(caller: Caller) -> dict[str, Any]:
    """What a worker needs to act for `caller` (budgets): no token, no key."""
    return {
        "kind": caller.kind,
        "subject": caller.subject,
        "roles": sorted(caller.roles),
        "scopes": sorted(caller.scopes),
        "key_id": caller.key_id,
    }


def caller_from(data: dict[str, Any]) -> Caller:
    """The `Caller` a job was submitted by."""
    return Caller(
        kind=data["kind"],
        subject=data.get("subject"),
        roles=frozenset(data.get("roles", ())),
        scopes=frozenset(data.get("scopes", ())),
        key_id=data.get("key_id"),
    )


def reservation_dict(reservation: Reservation | None) -> dict[str, Any] | None:
    """JSON form of a token reservation (settled by the worker)."""
    if reservation is None or not reservation.limited:
        return None
    return {"tokens": reservation.tokens, "entries": [list(e) for e in reservation.entries]}


def reservation_from(data: dict[str, Any] | None) -> Reservation | None:
    """A reservation stored by `reservation_dict`."""
    if not data:
        return None
    entries = tuple((str(k), float(i), float(h)) for k, i, h in data["entries"])
    return Reservation(tokens=int(data["tokens"]), entries=entries)


def trace_carrier(headers: Any = None) -> dict[str, str]:
    """W3C trace context of the current span, else the incoming request's headers."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    if TRACEPARENT not in carrier and headers is not None:
        value = headers.get(TRACEPARENT)
        if value:
            carrier[TRACEPARENT] = value
    return carrier


def public(job: AIJob) -> JobPublic:
    """The owner's view of a job."""
    return JobPublic.model_validate(job, from_attributes=True)


@dataclass(frozen=True, slots=True)
class Submitted:
    """A submission's job and whether it was created now (False: idempotent replay)."""

    job: AIJob
    created: bool


def _existing_for_key(session: Session, owner: str, key: str, digest: str) -> AIJob | None:
    binding = session.exec(
        select(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.key == key)
    ).first()
    if binding is None:
        return None
    if binding.expires_at <= utcnow():
        session.delete(binding)
        session.flush()
        return None
    if binding.request_hash != digest:
        raise ApiError(
            "This Idempotency-Key was used with a different request body.",
            code=ErrorCode.VAL_IDEMPOTENCY_KEY_REUSED,
            details={"idempotency_key": key},
        )
    job = session.get(AIJob, binding.resource_id)
    if job is None:  # purged by retention while the key still bound: start afresh
        session.delete(binding)
        session.flush()
    return job


def submit(
    *,
    session: Session,
    call: Call,
    raw_body: dict[str, Any],
    idempotency_key: str | None,
    settings: Settings,
    trace: dict[str, str],
) -> Submitted:
    """Create (or find, for a repeated Idempotency-Key) the job; commits, does not publish."""
    if call.body is not None and call.body.stream:
        raise ValidationFailed(
            errors=[{"field": "stream", "message": "jobs do not stream", "type": "value_error"}]
        )
    owner = owner_of(call.caller).owner
    digest = body_hash(raw_body)
    if idempotency_key is not None:
        found = _existing_for_key(session, owner, idempotency_key, digest)
        if found is not None:
            session.commit()
            return Submitted(found, created=False)
    # Quota-aware: the budget is taken now (429 at submission, not a failed job later).
    reservation = reserve_tokens(
        call.caller, reservation_for(call.request), path=call.path, method="POST"
    )
    now = utcnow()
    job = AIJob(
        owner=owner,
        caller=caller_dict(call.caller),
        status=QUEUED,
        request=raw_body,
        reservation=reservation_dict(reservation),
        path=call.path,
        traceparent=trace.get(TRACEPARENT),
        trace_id=_trace_id(trace.get(TRACEPARENT)) or current_trace_id(),
        enqueued_at=now,
    )
    job.celery_task_id = str(job.id)
    session.add(job)
    session.flush()
    if idempotency_key is not None:
        inserted = session.execute(
            insert(IdempotencyKey)
            .values(
                id=uuid.uuid4(),
                created_at=now,
                updated_at=now,
                owner=owner,
                key=idempotency_key,
                request_hash=digest,
                resource=RESOURCE,
                resource_id=job.id,
                expires_at=now + timedelta(seconds=settings.idempotency_key_ttl_seconds),
            )
            .on_conflict_do_nothing(constraint="uq_idempotency_key_owner_key")
            .returning(col(IdempotencyKey.id))
        ).first()
        if inserted is None:
            # A concurrent request with the same key committed first: use its job.
            session.rollback()
            settle(reservation, 0)
            found = _existing_for_key(session, owner, idempotency_key, digest)
            if found is None:
                raise Conflict("A request with this Idempotency-Key is being processed.")
            session.commit()
            return Submitted(found, created=False)
    session.commit()
    return Submitted(job, created=True)


def _trace_id(traceparent: str | None) -> str | None:
    # traceparent = version "-" trace-id "-" parent-id "-" flags (W3C Trace Context 3.2)
    if not traceparent:
        return None
    parts = traceparent.split("-")
    if len(parts) >= 4 and len(parts[1]) == 32 and parts[1] != "0" * 32:
        return parts[1].lower()
    return None


def publish(*, celery: Celery, job: AIJob, task_id: str | None = None) -> bool:
    """Send the job's message; False (and the sweeper's turn) when the broker is down."""
    headers = {TRACEPARENT: job.traceparent} if job.traceparent else None
    try:
        # ignore_result: the job's state lives in PostgreSQL. Without it Celery's Redis
        # result backend subscribes to the task's result channel on every send, and retries
        # that subscription for seconds (1 s apart) while Redis fails over.
        celery.send_task(
            RUN_JOB,
            args=[str(job.id)],
            task_id=task_id or job.celery_task_id,
            headers=headers,
            ignore_result=True,
        )
    except Exception as exc:  # kombu raises many types; the sweeper covers every one
        log.warning("job %s not published: %s", job.id, type(exc).__name__)
        return False
    return True


def get_job(*, session: Session, owner: str, job_id: uuid.UUID) -> AIJob:
    """`owner`'s job (404 for anyone else's: existence is not revealed)."""
    job = session.get(AIJob, job_id)
    if job is None or job.owner != owner:
        raise NotFound("No such job.")
    return job


def cancel(*, session: Session, owner: str, job_id: uuid.UUID, celery: Celery) -> AIJob:
    """Cancel a queued job now, or ask a running one to stop; 409 once finished."""
    job = session.exec(select(AIJob).where(AIJob.id == job_id).with_for_update()).first()
    if job is None or job.owner != owner:
        raise NotFound("No such job.")
    if job.status in FINISHED:
        raise Conflict(f"The job is already {job.status}.", details={"status": job.status})
    if job.status in (QUEUED, RETRYING):
        job.status, job.finished_at = CANCELLED, utcnow()
        reservation = reservation_from(job.reservation)
        job.reservation = None
        session.add(job)
        session.commit()
        if reservation is not None:
            settle(reservation, 0)
        try:
            if job.celery_task_id:
                celery.control.revoke(job.celery_task_id)
        except Exception:  # best effort: the worker also checks the row before running
            log.info("revoke of job %s not sent", job.id)
    else:
        job.cancel_requested = True
        session.add(job)
        session.commit()
    return job


def stale_jobs(*, session: Session, settings: Settings, limit: int = 100) -> list[AIJob]:
    """Queued jobs older than the requeue delay and running jobs whose lease expired."""
    now = utcnow()
    cutoff = now - timedelta(seconds=settings.job_requeue_after_seconds)
    queued = select(AIJob).where(
        col(AIJob.status).in_((QUEUED, RETRYING)), col(AIJob.enqueued_at) < cutoff
    )
    running = select(AIJob).where(AIJob.status == RUNNING, col(AIJob.lease_expires_at) < now)
    found = list(session.exec(queued.limit(limit)).all())
    found += list(session.exec(running.limit(limit)).all())
    return found
