"""The engine of an app (app/core/engine.py builds it) and a session per request.

Engines never cross a fork (SQLAlchemy "Using Connection Pools with Multiprocessing"):
gunicorn's post_fork and Celery's worker_process_init call `dispose_after_fork`.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Final

from flask import Flask, current_app, g
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session

from app.core.engine import build_engine
from app.settings import Settings

log = logging.getLogger("structured_api.db")

EXTENSION: Final = "db"
SESSION_FACTORY: Final = "db_session_factory"


def init_app(app: Flask, settings: Settings) -> None:
    """Create the engine (no connection yet) and close the request session on teardown."""
    eng = build_engine(settings)
    app.extensions[EXTENSION] = eng
    # Tests swap this factory to bind sessions to a connection rolled back per test.
    app.extensions[SESSION_FACTORY] = lambda: Session(eng, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is None:
            return
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
    session: Session | None = g.get("db_session")
    if session is None:
        session = g.db_session = current_app.extensions[SESSION_FACTORY]()
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
