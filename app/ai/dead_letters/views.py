"""`/v1/admin/dead-letters`: tasks that failed their last retry; list, read, replay.

Admins only, and only with an access token: no API-key scope grants this yet.
"""

from __future__ import annotations

import uuid
from typing import Final

from flask import Blueprint, Response, current_app

from app.ai.dead_letters import service as dead_letters
from app.ai.dead_letters.models import (
    DeadLetter,
    DeadLetterPage,
    DeadLetterPublic,
    DeadLetterQuery,
    ReplayResult,
)
from app.auth.decorators import require_roles
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import ok

bp = Blueprint("admin_dead_letters", __name__, url_prefix="/admin/dead-letters")

TAGS: Final = ["admin: jobs"]


def public(letter: DeadLetter) -> DeadLetterPublic:
    """The admin view of a dead letter."""
    return DeadLetterPublic.model_validate(letter, from_attributes=True)


@bp.get("")
@require_roles("admin")
@operation(
    "List dead letters (newest first)",
    tags=TAGS,
    query=DeadLetterQuery,
    response=DeadLetterPage,
    auth=True,
    roles=["admin"],
)
def list_dead_letters(query: DeadLetterQuery) -> Response:
    """A page of dead letters."""
    rows, total = dead_letters.list_letters(session=get_session(), query=query)
    return ok(DeadLetterPage(data=[public(r) for r in rows], count=total))


@bp.get("/<uuid:letter_id>")
@require_roles("admin")
@operation(
    "Read one dead letter", tags=TAGS, response=DeadLetterPublic, auth=True, roles=["admin"],
    errors=[404],
)  # fmt: skip
def get_dead_letter(letter_id: uuid.UUID) -> Response:
    """One dead letter with its payload and error."""
    return ok(public(dead_letters.get_letter(session=get_session(), letter_id=letter_id)))


@bp.post("/<uuid:letter_id>/replay")
@require_roles("admin")
@operation(
    "Replay a dead letter (send its task again, once)",
    tags=TAGS,
    response=ReplayResult,
    auth=True,
    roles=["admin"],
    errors=[404, 409, 503],
    description="Runs the task's replay hook (an AI job goes back to `queued`), then sends "
    "the same task and arguments under a new task id. A letter replays once: 409 after.",
)
def replay_dead_letter(letter_id: uuid.UUID) -> Response:
    """Replay one dead letter."""
    letter = dead_letters.replay(
        session=get_session(), letter_id=letter_id, celery=current_app.extensions["celery"]
    )
    assert letter.replay_task_id is not None
    return ok(ReplayResult(id=letter.id, task_id=letter.replay_task_id, status="replayed"))
