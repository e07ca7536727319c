"""`/v1/ai/...`: generate (sync or SSE), background jobs, the caller's own history."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Final

from flask import Blueprint, Response, current_app, request

from app.ai import generate as ai_service
from app.ai import http as ai_http
from app.ai import spend as ai_spend
from app.ai.extension import gateway
from app.ai.history import records as ai_history
from app.ai.jobs import service as jobs
from app.ai.jobs.models import JobPublic
from app.ai.models import (
    GenerateBody,
    GenerationPublic,
    HistoryPage,
    HistoryQuery,
    SpendPublic,
    SpendQuery,
)
from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.core.db import get_session
from app.core.errors import ValidationFailed
from app.core.openapi import operation
from app.core.responses import accepted, ok
from app.core.warnings import WarningLevel, warn

bp = Blueprint("ai", __name__, url_prefix="/ai")

TAGS: Final = ["ai"]
IDEMPOTENCY_KEY: Final = "Idempotency-Key"
IDEMPOTENT_REPLAYED: Final = "Idempotent-Replayed"
# draft-ietf-httpapi-idempotency-key-header: an opaque string; we accept printable ASCII.
_KEY_PATTERN: Final = re.compile(r"^[\x21-\x7e]{1,255}$")


def _call(body: GenerateBody, path: str) -> ai_service.Call:
    return ai_service.Call(current_caller(), body, ai_http.settings(), gateway(), path=path)


@bp.post("/generate")
@require_auth(scopes=["ai:generate"])
@operation(
    "Generate text (JSON, or server-sent events with `stream: true`)",
    tags=TAGS,
    body=GenerateBody,
    response=GenerationPublic,
    auth=True,
    errors=[404, 413, 429, 502, 503, 504],
    description="Providers serving the model are tried by priority, with retries on "
    "429/5xx/timeouts and a circuit breaker each. The caller's token budget is reserved "
    "before the call (429 `AI_TOKEN_LIMIT` when spent) and settled with the real usage. "
    "A prompt over `AI_MAX_PROMPT_CHARS` (all messages together) is 413 "
    "`AI_PROMPT_TOO_LARGE`; more than `AI_MAX_CONCURRENT_PER_CALLER` generations of one "
    "user at once is 429 `RATE_CONCURRENCY_LIMIT` with `Retry-After`. "
    "With `stream: true` the answer is `text/event-stream`: `start`, `delta`..., then "
    "`done` (usage, cost) or `error`; a stream ends with an `error` event "
    "(`AI_PROVIDER_TIMEOUT`, reason `deadline`) after `AI_STREAM_MAX_SECONDS`.",
)
def generate(body: GenerateBody) -> Response:
    """Generate text for the caller."""
    call = _call(body, request.path)
    if not body.stream:
        return ok(ai_service.generate(call=call, session=get_session))
    return ai_http.event_stream(ai_http.open_request_stream(call).sse())


def _idempotency_key() -> str | None:
    value = request.headers.get(IDEMPOTENCY_KEY)
    if value is None:
        return None
    if not _KEY_PATTERN.fullmatch(value):
        raise ValidationFailed(
            errors=[
                {
                    "field": IDEMPOTENCY_KEY,
                    "message": "1 to 255 printable ASCII characters",
                    "type": "string_pattern_mismatch",
                }
            ]
        )
    return value


def _location(job_id: uuid.UUID) -> str:
    return f"/v1/ai/jobs/{job_id}"  # under /v2, the v2 blueprint rewrites it


@bp.post("/jobs")
@require_auth(scopes=["ai:jobs"])
@operation(
    "Submit a background generation (202 + Location)",
    tags=TAGS,
    body=GenerateBody,
    response=JobPublic,
    status=202,
    auth=True,
    errors=[404, 413, 422, 429],
    description="Send `Idempotency-Key` to make the submission safe to repeat: the same "
    "key and body return the same job (header `Idempotent-Replayed: true`); the same key "
    "with another body is refused with 422 `VAL_IDEMPOTENCY_KEY_REUSED`. The token budget "
    "is reserved at submission.",
)
def submit_job(body: GenerateBody) -> Response:
    """Create an AI job."""
    key = _idempotency_key()
    submitted = jobs.submit(
        session=get_session(),
        call=_call(body, request.path),
        raw_body=body.model_dump(mode="json", exclude_unset=True),
        idempotency_key=key,
        settings=ai_http.settings(),
        trace=jobs.trace_carrier(request.headers),
    )
    job = submitted.job
    if submitted.created and not jobs.publish(celery=current_app.extensions["celery"], job=job):
        warn(
            "JOB_ENQUEUE_DELAYED",
            "The job is stored but the queue is unreachable; it will be sent shortly.",
            WarningLevel.WARN,
        )
    response = accepted(jobs.public(job), location=_location(job.id))
    if not submitted.created:
        response.headers[IDEMPOTENT_REPLAYED] = "true"
    return response


def _owner() -> str:
    return ai_service.owner_of(current_caller()).owner


@bp.get("/jobs/<uuid:job_id>")
@require_auth(scopes=["ai:jobs"], allow_readonly=True)
@operation("Read one of the caller's jobs", tags=TAGS, response=JobPublic, auth=True, errors=[404])
def get_job(job_id: uuid.UUID) -> Response:
    """One job of the caller."""
    return ok(jobs.public(jobs.get_job(session=get_session(), owner=_owner(), job_id=job_id)))


@bp.delete("/jobs/<uuid:job_id>")
@require_auth(scopes=["ai:jobs"])
@operation(
    "Cancel a job (queued: at once; running: when the current call returns)",
    tags=TAGS,
    response=JobPublic,
    auth=True,
    errors=[404, 409],
)
def cancel_job(job_id: uuid.UUID) -> Response:
    """Cancel one of the caller's jobs."""
    job = jobs.cancel(
        session=get_session(),
        owner=_owner(),
        job_id=job_id,
        celery=current_app.extensions["celery"],
    )
    return ok(jobs.public(job), status=200 if job.status == "cancelled" else 202)


@bp.get("/history")
@require_auth(scopes=["ai:history"], allow_readonly=True)
@operation(
    "The caller's generation history (newest first, cursor-paginated, filterable)",
    tags=TAGS,
    query=HistoryQuery,
    response=HistoryPage,
    auth=True,
)
def history(query: HistoryQuery) -> Response:
    """A page of the caller's own records."""
    rows, cursor = ai_history.list_history(session=get_session(), owner=_owner(), query=query)
    return ok(HistoryPage(data=[ai_history.item(r) for r in rows], next_cursor=cursor))


def spend_range(since: date | None, until: date | None) -> tuple[date, date]:
    """The days a spend query covers: default the last 30 (UTC), at most `MAX_DAYS`."""
    last = until or datetime.now(UTC).date()
    first = since or last - timedelta(days=29)
    if first > last or (last - first).days >= ai_spend.MAX_DAYS:
        raise ValidationFailed(
            errors=[
                {
                    "field": "since",
                    "message": f"since <= until, at most {ai_spend.MAX_DAYS} days apart",
                    "type": "value_error",
                }
            ]
        )
    return first, last


@bp.get("/spend")
@require_auth(scopes=["ai:history"], allow_readonly=True)
@operation(
    "The caller's AI spend per UTC day and model, summed from their history rows",
    tags=TAGS,
    query=SpendQuery,
    response=SpendPublic,
    auth=True,
    errors=[422],
)
def spend(query: SpendQuery) -> Response:
    """Calls, tokens and cost of the caller's own calls (all surfaces, all API keys)."""
    first, last = spend_range(query.since, query.until)
    return ok(ai_spend.caller_spend(session=get_session(), owner=_owner(), since=first, until=last))
