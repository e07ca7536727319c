"""Tables and schemas of the notes example (Base / Create / Update / table / Public)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Final

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from app.core.models import CoreModel

#: Largest page, and deepest offset of `GET /v1/notes` (deeper: the cursors of /v2/notes).
MAX_PAGE: Final = 100
MAX_OFFSET: Final = 10_000
#: `count` stops counting here, so a listing never scans more than this many rows.
MAX_COUNT: Final = 10_000


class NoteBase(SQLModel):
    """Fields a client may set."""

    title: str = Field(min_length=1, max_length=200)
    body: str = Field(default="", max_length=10_000)


class NoteCreate(NoteBase):
    """Body of `POST /v1/notes`."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]


class NoteUpdate(SQLModel):
    """Body of `PATCH /v1/notes/{id}`: every field optional."""

    model_config = ConfigDict(extra="forbid")  # type: ignore[assignment]

    title: str | None = Field(default=None, min_length=1, max_length=200)
    body: str | None = Field(default=None, max_length=10_000)


class Note(CoreModel, NoteBase, table=True):
    """The table: every note belongs to the user who wrote it."""

    __tablename__ = "custom_notes"
    # Serves every query of the example: one owner's notes, newest first (keyset pages).
    __table_args__ = (sa.Index("ix_custom_notes_owner_created", "owner_id", "created_at", "id"),)

    owner_id: uuid.UUID = Field(foreign_key="users.id", ondelete="CASCADE")


class NotePublic(BaseModel):
    """What the API returns for a note."""

    id: uuid.UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class NotesPublic(BaseModel):
    """A page of the caller's notes."""

    data: list[NotePublic]
    count: int = Field(
        description=f"The caller's notes, counted up to {MAX_COUNT:,} ({MAX_COUNT:,} means "
        "at least that many: the count never scans further)"
    )


class NoteListQuery(BaseModel):
    """Query parameters of `GET /v1/notes`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=MAX_PAGE)
    # Bounded: PostgreSQL's OFFSET is a bigint (a larger value was a 500, found by
    # tests/fuzz), and it reads and discards every skipped row. Deep pages belong to the
    # keyset (cursor) pagination of GET /v2/notes.
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)
