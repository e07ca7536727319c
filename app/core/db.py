"""SQLModel engine per app, a session per request, and a cheap health check.

Pool sizing follows one gunicorn worker's threads; engines never cross a fork
(SQLAlchemy "Using Connection Pools with Multiprocessing"): gunicorn's post_fork and
Celery's worker_process_init call `dispose_after_fork`.
"""

from __future__ import annotations

import logging
import select
import time
import weakref
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any, Final

import psycopg2
from flask import Flask, current_app, g
from psycopg2 import extensions
from sqlalchemy import Engine, make_url, text
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, create_engine

from app.config import Settings

log = logging.getLogger("structured_api.db")

EXTENSION: Final = "db"
SESSION_FACTORY: Final = "db_session_factory"
# Extra seconds the client waits beyond the server's statement_timeout, so a slow but
# healthy query ends with the server's own error rather than ours.
STATEMENT_GRACE_S: Final = 2.0


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
    if make_url(settings.database_url).get_driver_name() == "psycopg2":
        install_wait_deadlines()
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


def ping(eng: Engine) -> None:
    """Run `SELECT 1`; raises on any failure."""
    with eng.connect() as conn:
        conn.execute(text("SELECT 1"))


def dispose_after_fork(app: Flask) -> None:
    """Drop pooled connections inherited from a parent process without closing them."""
    eng: Engine | None = app.extensions.get(EXTENSION)
    if eng is not None:
        eng.dispose(close=False)


# -- client-side deadlines -------------------------------------------------------------
#
# statement_timeout is enforced by the server and libpq's connect_timeout only by its
# blocking connect: when PostgreSQL is frozen (SIGSTOP, stuck storage, a VM pause) or
# packets vanish, the kernel still ACKs and a query waits forever, pinning a gunicorn
# thread. psycopg2's wait-callback hook ("Support for coroutine libraries" in its docs)
# lets us bound each wait; on our exception psycopg2 closes the connection (green.c
# `green_panic`) and SQLAlchemy invalidates it, so the error handler answers 503.
# The hook is process-wide and rules out COPY and large objects, which we do not use.

_deadlines: weakref.WeakKeyDictionary[Any, tuple[float | None, float | None]] = (
    weakref.WeakKeyDictionary()
)


def _limits_of(conn: Any) -> tuple[float | None, float | None]:
    """(connect, command) seconds for `conn`, read once from its DSN; None = unbounded."""
    cached = _deadlines.get(conn)
    if cached is not None:
        return cached
    params = extensions.parse_dsn(conn.dsn)
    connect = float(params["connect_timeout"]) if params.get("connect_timeout") else None
    command = None
    for option in params.get("options", "").split("-c"):
        key, _, value = option.strip().partition("=")
        if key.strip() == "statement_timeout" and value.strip().isdigit() and int(value) > 0:
            command = int(value) / 1000 + STATEMENT_GRACE_S
    _deadlines[conn] = (connect, command)
    return connect, command


def wait_with_deadline(conn: Any) -> None:
    """psycopg2 wait callback: like `extras.wait_select`, but gives up at the deadline."""
    connect, command = _limits_of(conn)
    limit = connect if conn.status == extensions.STATUS_SETUP else command
    deadline = None if limit is None else time.monotonic() + limit
    poller = select.poll()  # not select(): file descriptors above 1024 are fine
    registered = False
    while True:
        state = conn.poll()
        if state == extensions.POLL_OK:
            return
        events = select.POLLIN if state == extensions.POLL_READ else select.POLLOUT
        if registered:
            poller.modify(conn.fileno(), events)
        else:
            poller.register(conn.fileno(), events)
            registered = True
        if deadline is None:
            poller.poll()
            continue
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise psycopg2.OperationalError(f"no answer from PostgreSQL within {limit:g}s")


def install_wait_deadlines() -> None:
    """Register `wait_with_deadline` unless another wait callback (e.g. gevent's) is set."""
    if extensions.get_wait_callback() is None:
        extensions.set_wait_callback(wait_with_deadline)
