"""The dead-letter store: tasks that failed their last retry, listed and replayed.

The Redis transport has no dead-letter queue (celery docs, backends-and-brokers/redis),
so a task that gives up writes its name, arguments and error here, in PostgreSQL, in
the same transaction that marks its subject (an AI job) dead. Replay sends the same task
with the same arguments under a new task id, after the task's replay hook has put its
subject back in a runnable state; a dead letter replays once (409 after that), so two
admins clicking at once cannot run a job twice.
"""

from __future__ import annotations

import logging
import traceback
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any, Final

from celery import Celery
from sqlalchemy import delete, func
from sqlmodel import Session, col, select

from app.ai.dead_letters.models import DeadLetter, DeadLetterQuery
from app.core.errors import Conflict, DependencyUnavailable, NotFound
from app.core.models import utcnow
from app.core.observability import metrics

log = logging.getLogger("structured_api.jobs")

PENDING: Final = "pending"
REPLAYED: Final = "replayed"
MAX_MESSAGE: Final = 4000
MAX_TRACE: Final = 8000

#: task name -> hook(session, args, kwargs) run before a replay is sent.
ReplayHook = Callable[[Session, list[Any], dict[str, Any]], None]
REPLAY_HOOKS: dict[str, ReplayHook] = {}


def replay_hook(task_name: str) -> Callable[[ReplayHook], ReplayHook]:
    """Register what must happen before `task_name` is replayed (e.g. reset its job)."""

    def register(hook: ReplayHook) -> ReplayHook:
        REPLAY_HOOKS[task_name] = hook
        return hook

    return register


def error_text(exc: BaseException) -> tuple[str, str]:
    """(type name, message + short traceback) of an exception, bounded in size."""
    message = str(exc)[:MAX_MESSAGE]
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=8))
    return type(exc).__name__, f"{message}\n\n{trace[-MAX_TRACE:]}".strip()


def record(
    *,
    session: Session,
    task_name: str,
    task_id: str,
    args: list[Any],
    kwargs: dict[str, Any],
    error_type: str,
    error_message: str,
    attempts: int,
    subject: str | None = None,
) -> DeadLetter:
    """Add a dead letter to `session` (the caller commits, together with its own change)."""
    letter = DeadLetter(
        task_name=task_name,
        task_id=task_id,
        subject=subject,
        task_args=list(args),
        task_kwargs=dict(kwargs),
        error_type=error_type[:200],
        error_message=error_message[: MAX_MESSAGE + MAX_TRACE],
        attempts=attempts,
    )
    session.add(letter)
    metrics.CELERY_DEAD_LETTERS.labels(task_name).inc()
    log.error(
        "task dead-lettered",
        extra={"task": task_name, "task_id": task_id, "subject": subject, "error": error_type},
    )
    return letter


def list_letters(*, session: Session, query: DeadLetterQuery) -> tuple[list[DeadLetter], int]:
    """A page of dead letters (newest first) and the total matching the filters."""
    statement = select(DeadLetter)
    counting = select(func.count()).select_from(DeadLetter)
    if query.status is not None:
        statement = statement.where(DeadLetter.status == query.status)
        counting = counting.where(DeadLetter.status == query.status)
    if query.task_name is not None:
        statement = statement.where(DeadLetter.task_name == query.task_name)
        counting = counting.where(DeadLetter.task_name == query.task_name)
    rows = session.exec(
        statement.order_by(col(DeadLetter.created_at).desc(), col(DeadLetter.id).desc())
        .offset(query.offset)
        .limit(query.limit)
    ).all()
    return list(rows), int(session.exec(counting).one())


def get_letter(*, session: Session, letter_id: uuid.UUID) -> DeadLetter:
    """One dead letter, or 404."""
    letter = session.get(DeadLetter, letter_id)
    if letter is None:
        raise NotFound("No such dead letter.")
    return letter


def replay(*, session: Session, letter_id: uuid.UUID, celery: Celery) -> DeadLetter:
    """Send a pending dead letter's task again (once); 409 if already replayed."""
    letter = session.exec(
        select(DeadLetter).where(DeadLetter.id == letter_id).with_for_update()
    ).first()
    if letter is None:
        raise NotFound("No such dead letter.")
    if letter.status != PENDING:
        session.rollback()
        raise Conflict(
            f"This dead letter is {letter.status}.",
            details={"status": letter.status, "replay_task_id": letter.replay_task_id},
        )
    hook = REPLAY_HOOKS.get(letter.task_name)
    if hook is not None:
        hook(session, list(letter.task_args), dict(letter.task_kwargs))
    task_id = str(uuid.uuid4())
    letter.status, letter.replayed_at, letter.replay_task_id = REPLAYED, utcnow(), task_id
    letter.replay_count += 1
    session.add(letter)
    session.commit()
    try:
        celery.send_task(
            letter.task_name, args=letter.task_args, kwargs=letter.task_kwargs, task_id=task_id
        )
    except Exception as exc:
        # Not sent: put the letter back so the replay can be tried again.
        letter.status, letter.replayed_at, letter.replay_task_id = PENDING, None, None
        session.add(letter)
        session.commit()
        raise DependencyUnavailable("The task broker is unreachable; retry the replay.") from exc
    return letter


def purge(*, session: Session, older_than_days: int) -> int:
    """Delete dead letters older than the retention; returns how many."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = session.exec(delete(DeadLetter).where(col(DeadLetter.created_at) < cutoff))
    return int(result.rowcount or 0)
