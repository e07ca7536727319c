"""The engine of an app (app/database/engine.py builds it) and sessions per request.

`get_session()` is transactional (BEGIN ... COMMIT/ROLLBACK, 2 round trips on top of the
statements); `get_autocommit_session()` runs each statement as its own transaction, no
BEGIN and no ROLLBACK: for reads (READ COMMITTED gives each statement its own snapshot
either way) and for a write of one row, which one statement makes atomic. It refuses a
flush of more than one row: several writes that must commit together need the first.

Engines never cross a fork (SQLAlchemy "Using Connection Pools with Multiprocessing"):
gunicorn's post_fork and Celery's worker_process_init call `dispose_after_fork`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

from flask import Flask, current_app
from sqlalchemy import Engine, event
from sqlalchemy.exc import InvalidRequestError, SQLAlchemyError
from sqlmodel import Session

from app.core.request_context import current_application, request_globals
from app.database.engine import build_engine
from app.settings import Settings

log = logging.getLogger("structured_api.db")

EXTENSION: Final = "db"
SESSION_FACTORY: Final = "db_session_factory"
AUTOCOMMIT_FACTORY: Final = "db_autocommit_session_factory"


def init_app(app: Flask, settings: Settings) -> None:
    """Create the engine (no connection yet) and close the request sessions on teardown."""
    eng = build_engine(settings)
    app.extensions[EXTENSION] = eng
    # Tests swap these factories to bind sessions to a connection rolled back per test.
    app.extensions[SESSION_FACTORY] = lambda: Session(eng, expire_on_commit=False)
    app.extensions[AUTOCOMMIT_FACTORY] = lambda: AutocommitSession(eng, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_sessions(exc: BaseException | None) -> None:
        state = request_globals()
        for key in ("db_session", "db_autocommit_session"):
            _close(state.pop(key, None), exc)


class AutocommitSession(Session):
    """A session on an autocommit connection: it refuses to flush more than one row.

    psycopg2's `autocommit` attribute is client-side (no round trip either way), unlike
    SQLAlchemy's isolation_level="AUTOCOMMIT", whose reset at checkin sends a SET; the
    pool's checkin turns it off again (app/database/engine.py).
    """


@event.listens_for(AutocommitSession, "after_begin")
def _autocommit(_session: Session, _transaction: object, connection: Any) -> None:
    connection.connection.dbapi_connection.autocommit = True


@event.listens_for(AutocommitSession, "before_flush")
def _one_row(session: Session, _context: object, _instances: object) -> None:
    changed = [o for o in session.dirty if session.is_modified(o)]
    if len(session.new) + len(session.deleted) + len(changed) > 1:
        raise InvalidRequestError("an autocommit session writes one row per flush")


def _close(session: Session | None, exc: BaseException | None) -> None:
    if session is not None:
        try:
            if exc is not None:
                session.rollback()
            session.close()
        except SQLAlchemyError as error:
            # PostgreSQL dropped the connection under us (restart, terminated backend):
            # the ROLLBACK of close() fails. The response is already decided; a teardown
            # that raised would turn it into the server's bare 500 (found by
            # tests/chaos), so the dead connection is discarded instead.
            log.warning("request session not closed cleanly: %s", type(error).__name__)
            with suppress(SQLAlchemyError):
                session.invalidate()


def engine() -> Engine:
    """The current app's engine."""
    eng: Engine = current_app.extensions[EXTENSION]
    return eng


def get_session() -> Session:
    """The session of the current request/app context (created on first use)."""
    state = request_globals()
    session: Session | None = state.get("db_session")
    if session is None:
        session = state.db_session = current_application().extensions[SESSION_FACTORY]()
    return session


def get_autocommit_session() -> Session:
    """The request's autocommit session (module docstring): reads, one-row writes."""
    state = request_globals()
    session: Session | None = state.get("db_autocommit_session")
    if session is None:
        factory = current_application().extensions[AUTOCOMMIT_FACTORY]
        session = state.db_autocommit_session = factory()
    return session


@contextmanager
def session_scope() -> Iterator[Session]:
    """A session committed on success and rolled back on error (tasks, CLI)."""
    session: Session = current_app.extensions[SESSION_FACTORY]()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def dispose_after_fork(app: Flask) -> None:
    """Drop pooled connections inherited from a parent process without closing them."""
    eng: Engine | None = app.extensions.get(EXTENSION)
    if eng is not None:
        eng.dispose(close=False)
