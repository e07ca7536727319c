"""SQLModel engine per app, a session per request, and a cheap health check.

Pool sizing follows one gunicorn worker's threads; engines never cross a fork
(SQLAlchemy "Using Connection Pools with Multiprocessing"): gunicorn's post_fork and
Celery's worker_process_init call `dispose_after_fork`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from flask import Flask, current_app, g
from sqlalchemy import Engine, text
from sqlmodel import Session, create_engine

from app.config import Settings

EXTENSION: Final = "db"
SESSION_FACTORY: Final = "db_session_factory"


def build_engine(settings: Settings) -> Engine:
    """An engine with bounded pool, pre-ping and hard connect/statement timeouts."""
    connect_args: dict[str, Any] = {
        "connect_timeout": settings.db_connect_timeout,
        "application_name": settings.app_name,
        # TCP keepalives find a dead server on idle connections within seconds.
        "keepalives": 1,
        "keepalives_idle": 5,
        "keepalives_interval": 2,
        "keepalives_count": 2,
    }
    if settings.db_statement_timeout_ms:
        connect_args["options"] = f"-c statement_timeout={settings.db_statement_timeout_ms}"
    return create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_pre_ping=True,
        pool_recycle=1800,
        connect_args=connect_args,
    )


def init_app(app: Flask, settings: Settings) -> None:
    """Create the engine (no connection yet) and close the request session on teardown."""
    eng = build_engine(settings)
    app.extensions[EXTENSION] = eng
    # Tests swap this factory to bind sessions to a connection rolled back per test.
    app.extensions[SESSION_FACTORY] = lambda: Session(eng, expire_on_commit=False)

    @app.teardown_appcontext
    def _close_session(exc: BaseException | None) -> None:
        session: Session | None = g.pop("db_session", None)
        if session is not None:
            if exc is not None:
                session.rollback()
            session.close()


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


def ping(eng: Engine) -> None:
    """Run `SELECT 1`; raises on any failure."""
    with eng.connect() as conn:
        conn.execute(text("SELECT 1"))


def dispose_after_fork(app: Flask) -> None:
    """Drop pooled connections inherited from a parent process without closing them."""
    eng: Engine | None = app.extensions.get(EXTENSION)
    if eng is not None:
        eng.dispose(close=False)
