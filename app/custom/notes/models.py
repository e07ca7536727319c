"""Tables and schemas of the notes example (Base / Create / Update / table / Public)."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict
from sqlmodel import Field, SQLModel

from app.models.base import CoreModel


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
    """The table."""

    __tablename__ = "custom_notes"


class NotePublic(BaseModel):
    """What the API returns for a note."""

    id: uuid.UUID
    title: str
    body: str
    created_at: datetime
    updated_at: datetime


class NotesPublic(BaseModel):
    """A page of notes."""

    data: list[NotePublic]
    count: int


class NoteListQuery(BaseModel):
    """Query parameters of `GET /v1/notes`."""

    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    # Bounded: PostgreSQL's OFFSET is a bigint, and a larger value was a 500 (found by
    # tests/fuzz). Deep pages belong to the cursor pagination of GET /v2/notes anyway.
    offset: int = Field(default=0, ge=0, le=1_000_000)
