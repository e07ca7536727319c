"""Service functions for notes: keyword-only, raise domain errors, no Flask imports."""

from __future__ import annotations

import uuid

from sqlalchemy import func
from sqlmodel import Session, select

from app.core.errors import NotFound
from app.custom.notes.models import Note, NoteCreate, NoteUpdate


def create_note(*, session: Session, data: NoteCreate) -> Note:
    """Insert a note and commit."""
    note = Note.model_validate(data)
    session.add(note)
    session.commit()
    session.refresh(note)
    return note


def get_note(*, session: Session, note_id: uuid.UUID) -> Note:
    """One note, or `NotFound`."""
    note = session.get(Note, note_id)
    if note is None:
        raise NotFound(f"Note {note_id} does not exist.")
    return note


def update_note(*, session: Session, note_id: uuid.UUID, data: NoteUpdate) -> Note:
    """Apply the fields that were sent."""
    note = get_note(session=session, note_id=note_id)
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(note, key, value)
    session.add(note)
    session.commit()
    session.refresh(note)
    return note


def list_notes(*, session: Session, limit: int, offset: int) -> tuple[list[Note], int]:
    """A page of notes, newest first, and the total count."""
    total = session.exec(select(func.count()).select_from(Note)).one()
    rows = session.exec(
        select(Note).order_by(Note.created_at.desc()).offset(offset).limit(limit)  # type: ignore[attr-defined]
    ).all()
    return list(rows), int(total)
