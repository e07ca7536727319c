"""HTTP views of the notes example; validated and documented by `@operation`."""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, g

from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import created, ok
from app.custom.notes import services
from app.custom.notes.models import (
    NoteCreate,
    NoteListQuery,
    NotePublic,
    NotesPublic,
    NoteUpdate,
)

bp = Blueprint("custom_notes", __name__, url_prefix="/v1/notes")


@bp.before_request
def _version() -> None:
    g.api_version = "1.0"


@bp.post("")
@operation(
    "Create a note",
    tags=["notes (extension example)"],
    body=NoteCreate,
    response=NotePublic,
    status=201,
    errors=[503],
)
def create_note(body: NoteCreate) -> Response:
    """Create a note."""
    note = services.create_note(session=get_session(), data=body)
    return created(
        NotePublic.model_validate(note, from_attributes=True), location=f"/v1/notes/{note.id}"
    )


@bp.get("")
@operation(
    "List notes",
    tags=["notes (extension example)"],
    query=NoteListQuery,
    response=NotesPublic,
    errors=[503],
)
def list_notes(query: NoteListQuery) -> Response:
    """A page of notes, newest first."""
    rows, total = services.list_notes(session=get_session(), limit=query.limit, offset=query.offset)
    data = [NotePublic.model_validate(n, from_attributes=True) for n in rows]
    return ok(NotesPublic(data=data, count=total))


@bp.get("/<uuid:note_id>")
@operation(
    "Read a note", tags=["notes (extension example)"], response=NotePublic, errors=[404, 503]
)
def get_note(note_id: uuid.UUID) -> Response:
    """One note."""
    note = services.get_note(session=get_session(), note_id=note_id)
    return ok(NotePublic.model_validate(note, from_attributes=True))


@bp.patch("/<uuid:note_id>")
@operation(
    "Update a note",
    tags=["notes (extension example)"],
    body=NoteUpdate,
    response=NotePublic,
    errors=[404, 503],
)
def update_note(note_id: uuid.UUID, body: NoteUpdate) -> Response:
    """Change a note's title or body."""
    note = services.update_note(session=get_session(), note_id=note_id, data=body)
    return ok(NotePublic.model_validate(note, from_attributes=True))
