"""Service functions for notes: keyword-only, raise domain errors, no Flask imports.

Every function takes the owner: a note is only ever read or changed by its owner, and
another user's note is `NotFound` exactly like a missing one (no way to probe ids).
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from sqlalchemy import func
from sqlmodel import Session, col, select

from app.core.errors import NotFound
from app.core.models import utcnow
from app.custom.notes.models import MAX_COUNT, Note, NoteCreate, NotePublic, NoteUpdate

#: `read_note`'s query, built once: SQLAlchemy Core, the columns `NotePublic` needs.
_COLUMNS = Note.__table__.c  # type: ignore[attr-defined]
_READ = sa.select(*(_COLUMNS[name] for name in NotePublic.model_fields)).where(
    _COLUMNS.id == sa.bindparam("note_id"), _COLUMNS.owner_id == sa.bindparam("owner_id")
)


def create_note(*, session: Session, owner_id: uuid.UUID, data: NoteCreate) -> Note:
    """Insert a note owned by `owner_id` and commit.

    Every column's value is set in Python (app/core/models.py), so the object already
    holds what was stored: no refresh, one round trip fewer.
    """
    note = Note.model_validate(data, update={"owner_id": owner_id})
    session.add(note)
    session.commit()
    return note


_INSERT = sa.insert(Note.__table__)  # type: ignore[attr-defined]


def insert_note(*, session: Session, owner_id: uuid.UUID, data: NoteCreate) -> NotePublic:
    """`create_note` for a created answer: one Core INSERT of values set here, as
    `CoreModel` sets them (a fresh uuid4, one instant for both timestamps), and the
    answer built from them, without an ORM object and its unit of work
    (docs/performance.md). Committed on an autocommit session's connection by itself."""
    now = utcnow()
    note = NotePublic(id=uuid.uuid4(), title=data.title, body=data.body, created_at=now,
                      updated_at=now)  # fmt: skip
    session.connection().execute(_INSERT, {**note.model_dump(), "owner_id": owner_id})
    session.commit()
    return note


def get_note(*, session: Session, owner_id: uuid.UUID, note_id: uuid.UUID) -> Note:
    """One of the owner's notes, or `NotFound` (also when someone else owns it)."""
    note = session.exec(
        select(Note).where(col(Note.id) == note_id, col(Note.owner_id) == owner_id)
    ).first()
    if note is None:
        raise NotFound(f"Note {note_id} does not exist.")
    return note


def read_note(*, session: Session, owner_id: uuid.UUID, note_id: uuid.UUID) -> NotePublic:
    """`get_note` for a read-only answer: one row straight into `NotePublic`, without
    building the query or an ORM object per call (docs/performance.md)."""
    row = session.connection().execute(_READ, {"note_id": note_id, "owner_id": owner_id}).first()
    if row is None:
        raise NotFound(f"Note {note_id} does not exist.")
    return NotePublic.model_validate(row._mapping)


def update_note(
    *, session: Session, owner_id: uuid.UUID, note_id: uuid.UUID, data: NoteUpdate
) -> Note:
    """Apply the fields that were sent."""
    note = get_note(session=session, owner_id=owner_id, note_id=note_id)
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(note, key, value)
    session.add(note)
    session.commit()
    session.refresh(note)
    return note


def delete_note(*, session: Session, owner_id: uuid.UUID, note_id: uuid.UUID) -> None:
    """Delete one of the owner's notes, or `NotFound`."""
    session.delete(get_note(session=session, owner_id=owner_id, note_id=note_id))
    session.commit()


def list_notes(
    *, session: Session, owner_id: uuid.UUID, limit: int, offset: int
) -> tuple[list[Note], int]:
    """A page of the owner's notes, newest first, and their count up to `MAX_COUNT`.

    The count reads at most `MAX_COUNT` index entries, so a caller with many notes cannot
    make every listing scan all of them.
    """
    mine = select(col(Note.id)).where(col(Note.owner_id) == owner_id).limit(MAX_COUNT)
    total = session.exec(select(func.count()).select_from(mine.subquery())).one()
    rows = session.exec(
        select(Note)
        .where(col(Note.owner_id) == owner_id)
        .order_by(col(Note.created_at).desc(), col(Note.id).desc())
        .offset(offset)
        .limit(limit)
    ).all()
    return list(rows), int(total)
