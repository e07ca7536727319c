"""HTTP views of the notes example; validated and documented by `@operation`.

Every route needs a signed-in user (`@require_auth`, above `@operation` so a caller is
authorized before its body is validated) and works on the caller's own notes only.
Readonly accounts may read; writing needs the `user` role (the decorator's rule for
unsafe methods). API keys are refused: no route names a scope (docs/auth.md).

The listing is served from the response cache (docs/caching.md): `@cached` sits below
`@require_auth`, so a hit is still authorized, and every write invalidates the caller's
`notes:{caller}` tag once it succeeded, so a list never misses a note the caller wrote.
"""

from __future__ import annotations

import uuid

from flask import Blueprint, Response, g

from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.cache.http import cached, invalidates
from app.core.db import get_autocommit_session, get_session
from app.core.errors import ErrorCode, Unauthorized
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

#: What a listing depends on: the caller's notes (app/api/v2/notes.py uses it too).
NOTES_TAG = "notes:{caller}"

bp = Blueprint("custom_notes", __name__, url_prefix="/v1/notes")
TAGS = ["notes (extension example)"]


@bp.before_request
def _version() -> None:
    g.api_version = "1.0"


def owner() -> uuid.UUID:
    """The signed-in caller's user id: the owner of every note it touches."""
    try:
        return uuid.UUID(str(current_caller().subject))
    except ValueError:  # our tokens name a user id; anything else is not one of ours
        raise Unauthorized(code=ErrorCode.AUTH_INVALID_TOKEN) from None


@bp.post("")
@require_auth()
@invalidates(NOTES_TAG)
@operation(
    "Create a note",
    tags=TAGS,
    body=NoteCreate,
    response=NotePublic,
    status=201,
    auth=True,
    errors=[503],
)
def create_note(body: NoteCreate) -> Response:
    """Create a note owned by the caller."""
    # One INSERT: atomic by itself, so no BEGIN/COMMIT around it (app/core/db.py).
    note = services.insert_note(session=get_autocommit_session(), owner_id=owner(), data=body)
    return created(note, location=f"/v1/notes/{note.id}")


@bp.get("")
@require_auth()
@cached(ttl=60, tags=[NOTES_TAG])
@operation(
    "List your notes",
    tags=TAGS,
    query=NoteListQuery,
    response=NotesPublic,
    auth=True,
    errors=[503],
)
def list_notes(query: NoteListQuery) -> Response:
    """A page of the caller's notes, newest first."""
    rows, total = services.list_notes(
        session=get_session(), owner_id=owner(), limit=query.limit, offset=query.offset
    )
    data = [NotePublic.model_validate(n, from_attributes=True) for n in rows]
    return ok(NotesPublic(data=data, count=total))


@bp.get("/<uuid:note_id>")
@require_auth()
@operation("Read one of your notes", tags=TAGS, response=NotePublic, auth=True, errors=[404, 503])
def get_note(note_id: uuid.UUID) -> Response:
    """One note of the caller's; someone else's is 404 like a missing one."""
    return ok(
        services.read_note(session=get_autocommit_session(), owner_id=owner(), note_id=note_id)
    )


@bp.patch("/<uuid:note_id>")
@require_auth()
@invalidates(NOTES_TAG)
@operation(
    "Update one of your notes",
    tags=TAGS,
    body=NoteUpdate,
    response=NotePublic,
    auth=True,
    errors=[404, 503],
)
def update_note(note_id: uuid.UUID, body: NoteUpdate) -> Response:
    """Change a note's title or body."""
    note = services.update_note(session=get_session(), owner_id=owner(), note_id=note_id, data=body)
    return ok(NotePublic.model_validate(note, from_attributes=True))


@bp.delete("/<uuid:note_id>")
@require_auth()
@invalidates(NOTES_TAG)
@operation("Delete one of your notes", tags=TAGS, auth=True, errors=[404, 503])
def delete_note(note_id: uuid.UUID) -> Response:
    """Delete a note of the caller's."""
    services.delete_note(session=get_session(), owner_id=owner(), note_id=note_id)
    return ok(None, message="Note deleted.")
