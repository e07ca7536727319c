"""`/v2/notes`: the notes example with cursor pagination (the v1 list uses offsets).

The contract change that justifies a major version: `GET /v2/notes` takes an opaque
`cursor` instead of `offset` and returns `{"items", "next_cursor"}` instead of
`{"data", "count"}` (no COUNT(*) per page, stable under concurrent inserts). Like v1 it
needs a signed-in user and lists only the caller's own notes. Creating, reading,
updating and deleting one note keep the v1 contract: the extension's own views are
carried over (the extension registers after `/v2`, so it is named here, not found in
the URL map like the core v1 routes). It serves the `app/custom/notes` example
extension: remove this module together with that example.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime

from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import tuple_
from sqlmodel import Session, col, select

from app.auth.decorators import require_auth
from app.cache.http import cached
from app.core.db import get_session
from app.core.errors import ValidationFailed
from app.core.openapi import operation
from app.core.responses import ok
from app.custom.notes import views as v1_views
from app.custom.notes.models import MAX_PAGE, Note, NotePublic

bp = Blueprint("notes", __name__, url_prefix="/notes")
TAGS = ["notes (extension example)"]


class NotesCursorQuery(BaseModel):
    """Query of `GET /v2/notes`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(
        default=None, max_length=200, description="`next_cursor` of the previous page"
    )


class NotesPage(BaseModel):
    """A page of notes, newest first; `next_cursor` is null on the last page."""

    items: list[NotePublic]
    next_cursor: str | None


def encode_cursor(note: Note) -> str:
    """Opaque position after `note` in (created_at, id) descending order."""
    raw = f"{note.created_at.isoformat()}|{note.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """The position a cursor stands for; 422 on anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, note_id = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(note_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise ValidationFailed(
            errors=[
                {"field": "cursor", "message": "not a cursor from this API", "type": "value_error"}
            ]
        ) from None


def list_page(
    *, session: Session, owner_id: uuid.UUID, limit: int, cursor: str | None
) -> tuple[list[Note], str | None]:
    """Up to `limit` of the owner's notes after `cursor` (keyset pagination), next cursor.

    A cursor only positions within the owner's notes: one copied from another user's
    page reveals nothing (the owner filter applies first).
    """
    statement = select(Note).where(col(Note.owner_id) == owner_id)
    if cursor is not None:
        at, note_id = decode_cursor(cursor)
        statement = statement.where(tuple_(col(Note.created_at), col(Note.id)) < (at, note_id))
    statement = statement.order_by(col(Note.created_at).desc(), col(Note.id).desc())
    rows = list(session.exec(statement.limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None


@bp.get("")
@require_auth()
@cached(ttl=60, tags=[v1_views.NOTES_TAG])
@operation(
    "List your notes (cursor pagination)",
    tags=TAGS,
    query=NotesCursorQuery,
    response=NotesPage,
    auth=True,
    errors=[503],
)
def list_notes(query: NotesCursorQuery) -> Response:
    """A page of the caller's notes, newest first."""
    rows, next_cursor = list_page(
        session=get_session(), owner_id=v1_views.owner(), limit=query.limit, cursor=query.cursor
    )
    items = [NotePublic.model_validate(n, from_attributes=True) for n in rows]
    return ok(NotesPage(items=items, next_cursor=next_cursor))


# Carried over unchanged from v1 (app/api/v2/__init__.py decides; same view functions).
bp.add_url_rule("", view_func=v1_views.create_note, methods=["POST"])
bp.add_url_rule("/<uuid:note_id>", view_func=v1_views.get_note, methods=["GET"])
bp.add_url_rule("/<uuid:note_id>", view_func=v1_views.update_note, methods=["PATCH"])
bp.add_url_rule("/<uuid:note_id>", view_func=v1_views.delete_note, methods=["DELETE"])
