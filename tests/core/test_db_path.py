"""The cheap database path on real PostgreSQL: round trips per read and write, the
autocommit session's one-row rule, and the checkout liveness check that replaced
`pool_pre_ping` (app/database/engine.py, app/core/db.py, docs/performance.md).

Round trips are counted in the psycopg2 wait callback the engine installs: every libpq
wait (a statement, BEGIN, COMMIT, ROLLBACK, a ping) passes through it once.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from psycopg2 import extensions
from sqlalchemy import Engine
from sqlalchemy.exc import InvalidRequestError
from sqlmodel import Session, select

from app.core import db
from app.custom.notes.models import Note
from app.database import engine as engine_module
from app.factory import create_app
from app.settings import Settings


@pytest.fixture
def round_trips() -> Iterator[list[int]]:
    """A counter of libpq waits, wrapping the engine's deadline callback."""
    engine_module.install_wait_deadlines()
    inner = extensions.get_wait_callback()
    counter = [0]

    def counting(conn: Any) -> None:
        counter[0] += 1
        inner(conn)

    extensions.set_wait_callback(counting)
    yield counter
    extensions.set_wait_callback(inner)


@pytest.fixture
def real_app(settings: Settings, migrated_engine: Engine) -> Iterator[Flask]:
    """The app with its own engine and sessions (not the per-test transaction)."""
    application = create_app(settings)
    yield application
    application.extensions["config_store"].stop()
    application.extensions[db.EXTENSION].dispose()


def stored_titles(engine: Engine, owner: uuid.UUID) -> list[str]:
    """What another connection sees: only committed rows."""
    with Session(engine) as session:
        return sorted(n.title for n in session.exec(select(Note).where(Note.owner_id == owner)))


def test_autocommit_session_writes_and_reads_one_row_in_one_round_trip_each(
    real_app: Flask, migrated_engine: Engine, owner: uuid.UUID, round_trips: list[int]
) -> None:
    with real_app.app_context():
        db.get_autocommit_session().connection()  # the pool's first connect, not measured
    with real_app.app_context():
        session = db.get_autocommit_session()
        before = round_trips[0]
        note = Note(title="one row", body="", owner_id=owner)
        session.add(note)
        session.commit()
        assert round_trips[0] - before == 1  # the INSERT alone: no BEGIN, no COMMIT
        assert stored_titles(migrated_engine, owner) == ["one row"]  # committed by itself
    with real_app.app_context():
        before = round_trips[0]
        got = db.get_autocommit_session().exec(select(Note).where(Note.id == note.id)).one()
        assert got.title == "one row"
    assert round_trips[0] - before == 1  # the SELECT alone, and no ROLLBACK at teardown


def test_the_transactional_session_still_begins_and_ends_its_transaction(
    real_app: Flask, owner: uuid.UUID, round_trips: list[int]
) -> None:
    with real_app.app_context():
        db.get_session().connection()
    with real_app.app_context():
        before = round_trips[0]
        db.get_session().exec(select(Note).where(Note.owner_id == owner)).all()
    assert round_trips[0] - before == 3  # BEGIN, SELECT, ROLLBACK
    # The pool's checkin ended the autocommit of the earlier test's connections: a
    # session that commits two rows together still gets a real transaction.
    with real_app.app_context():
        session = db.get_session()
        session.add(Note(title="a", body="", owner_id=owner))
        session.add(Note(title="b", body="", owner_id=owner))
        session.flush()
        session.rollback()
    with real_app.app_context():
        assert db.get_session().exec(select(Note).where(Note.owner_id == owner)).all() == []


def test_autocommit_session_refuses_a_flush_of_two_rows(
    real_app: Flask, migrated_engine: Engine, owner: uuid.UUID
) -> None:
    with real_app.app_context():
        session = db.get_autocommit_session()
        session.add(Note(title="a", body="", owner_id=owner))
        session.add(Note(title="b", body="", owner_id=owner))
        with pytest.raises(InvalidRequestError, match="one row per flush"):
            session.commit()
    assert stored_titles(migrated_engine, owner) == []


def test_checkout_replaces_a_connection_the_server_ended_without_a_round_trip(
    settings: Settings, migrated_engine: Engine, round_trips: list[int]
) -> None:
    eng = engine_module.build_engine(settings)
    try:
        with eng.connect() as conn:
            first = conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one()
            conn.rollback()
        before = round_trips[0]
        with eng.connect() as conn:  # a healthy pooled connection: no ping
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() == first
            conn.rollback()
        assert round_trips[0] - before == 3  # BEGIN, SELECT, ROLLBACK; no SELECT 1
        with migrated_engine.connect() as other:
            other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": first})
        time.sleep(0.2)  # the backend's goodbye and FIN reach the pooled socket
        with eng.connect() as conn:  # no error: the dead one is replaced at checkout
            assert conn.execute(sa.text("SELECT pg_backend_pid()")).scalar_one() != first
    finally:
        eng.dispose()


def test_a_connection_idle_past_the_limit_is_pinged_on_checkout(
    settings: Settings, migrated_engine: Engine, round_trips: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    eng = engine_module.build_engine(settings)
    try:
        with eng.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            conn.rollback()
        monkeypatch.setattr(engine_module, "IDLE_PING_S", 0.0)
        before = round_trips[0]
        with eng.connect():
            pass
        assert round_trips[0] - before == 1  # the ping
    finally:
        eng.dispose()
