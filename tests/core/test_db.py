"""`CoreModel` on real PostgreSQL: UUID keys, creation and update timestamps.

Rows here are committed for real (separate transactions, as production does), so each
test deletes what it created instead of relying on the per-test rollback fixture.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Session

from app.custom.notes.models import Note

# The shared columns and the PostgreSQL types they must have in the migrated schema.
CORE_COLUMN_TYPES = {
    "id": "uuid",
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
}


def _insert(engine: Engine, owner: uuid.UUID, title: str = "first") -> Note:
    with Session(engine, expire_on_commit=False) as session:
        note = Note(title=title, body="", owner_id=owner)
        session.add(note)
        session.commit()
        session.refresh(note)
    return note


@pytest.mark.parametrize(("column", "pg_type"), sorted(CORE_COLUMN_TYPES.items()))
def test_core_columns_have_native_postgres_types(
    migrated_engine: Engine, column: str, pg_type: str
) -> None:
    with migrated_engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "SELECT data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = 'custom_notes' AND column_name = :column"
            ),
            {"column": column},
        ).one()
    assert row.data_type == pg_type
    assert row.is_nullable == "NO"


def test_primary_key_is_a_fresh_uuid4_per_row(migrated_engine: Engine, owner: uuid.UUID) -> None:
    first = _insert(migrated_engine, owner, "a")
    second = _insert(migrated_engine, owner, "b")
    assert isinstance(first.id, uuid.UUID)
    assert first.id.version == 4
    assert first.id != second.id
    with Session(migrated_engine) as session:
        assert session.get(Note, first.id) is not None


def test_created_at_and_updated_at_are_set_aware_and_equal_on_insert(
    migrated_engine: Engine, owner: uuid.UUID
) -> None:
    note = _insert(migrated_engine, owner)
    assert note.created_at.tzinfo is not None
    assert note.created_at.utcoffset() == timedelta(0)
    assert note.updated_at == note.created_at
    assert abs(note.created_at - datetime.now(note.created_at.tzinfo)) < timedelta(minutes=1)


def test_rows_inserted_without_timestamps_get_server_defaults(
    migrated_engine: Engine, owner: uuid.UUID
) -> None:
    # A plain SQL insert (a data migration, psql) must not violate NOT NULL.
    new_id = uuid.uuid4()
    with migrated_engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO custom_notes (id, title, body, owner_id) VALUES (:id, 'raw', '', :o)"
            ),
            {"id": new_id, "o": owner},
        )
        row = conn.execute(
            sa.text("SELECT created_at, updated_at FROM custom_notes WHERE id = :id"),
            {"id": new_id},
        ).one()
    assert row.created_at is not None
    assert row.updated_at == row.created_at


def test_update_in_a_later_transaction_moves_updated_at_but_not_created_at(
    migrated_engine: Engine, owner: uuid.UUID
) -> None:
    note = _insert(migrated_engine, owner)
    time.sleep(0.01)  # timestamps have microsecond resolution; make the gap unambiguous
    with Session(migrated_engine, expire_on_commit=False) as session:
        stored = session.get(Note, note.id)
        assert stored is not None
        stored.title = "second"
        session.add(stored)
        session.commit()
        session.refresh(stored)
    assert stored.created_at == note.created_at
    assert stored.updated_at > note.updated_at
    assert stored.updated_at - note.updated_at < timedelta(minutes=1)


def test_two_updates_in_one_transaction_each_move_updated_at(
    migrated_engine: Engine, owner: uuid.UUID
) -> None:
    # clock_timestamp(), not now(): now() is frozen for the whole transaction.
    note = _insert(migrated_engine, owner)
    with Session(migrated_engine, expire_on_commit=False) as session:
        stored = session.get(Note, note.id)
        assert stored is not None
        stored.title = "second"
        session.flush()
        session.refresh(stored)
        after_first = stored.updated_at
        stored.title = "third"
        session.flush()
        session.refresh(stored)
        after_second = stored.updated_at
        session.commit()
    assert note.updated_at < after_first < after_second
    assert stored.created_at == note.created_at
