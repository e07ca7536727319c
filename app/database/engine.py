"""The SQLAlchemy engine: bounded pool, a liveness check per checkout, deadlines on waits.

Flask-free (the operator builds its engine here too); the Flask side, a session per
request, is app/core/db.py. Pool sizing follows one gunicorn worker's threads; engines
never cross a fork (SQLAlchemy "Using Connection Pools with Multiprocessing"): gunicorn's
post_fork and Celery's worker_process_init dispose them (app/core/db.py).
"""

from __future__ import annotations

import select
import time
import weakref
from typing import Any, Final

import psycopg2
from psycopg2 import extensions
from sqlalchemy import Engine, event, exc, make_url, text
from sqlmodel import create_engine

from app.settings import Settings

# Extra seconds the client waits beyond the server's statement_timeout, so a slow but
# healthy query ends with the server's own error rather than ours.
STATEMENT_GRACE_S: Final = 2.0
#: A pooled connection idle longer than this is pinged (`SELECT 1`) on checkout.
IDLE_PING_S: Final = 10.0


def build_engine(settings: Settings) -> Engine:
    """An engine with bounded pool, checkout liveness and hard connect/statement timeouts."""
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
    eng = create_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout,
        pool_recycle=1800,
        connect_args=connect_args,
    )
    event.listen(eng, "checkout", check_alive)
    event.listen(eng, "checkin", _checked_in)
    return eng


def _checked_in(dbapi_conn: Any, record: Any) -> None:
    """Stamp the idle start; end the autocommit of app/core/db.py's AutocommitSession."""
    record.info["idle"] = time.monotonic()
    if dbapi_conn is not None and not dbapi_conn.closed and dbapi_conn.autocommit:
        dbapi_conn.autocommit = False


def check_alive(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
    """Checkout: refuse a pooled connection PostgreSQL has closed, without a round trip.

    Instead of `pool_pre_ping` (a `SELECT 1` per checkout): an idle connection has nothing
    to read, so a readable or hung-up socket means the server ended it (restart, kill,
    terminated backend; TCP keepalives mark a silently dead peer the same way). Only a
    connection idle over IDLE_PING_S is pinged. DisconnectionError makes the pool retry
    with a new connection; a disconnect met mid-query invalidates the whole pool.
    """
    idle = record.info.get("idle")
    if idle is None:  # fresh from connect()
        return
    poller = select.poll()
    poller.register(dbapi_conn.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0) or (time.monotonic() - idle > IDLE_PING_S and not _pings(dbapi_conn)):
        raise exc.DisconnectionError("pooled connection closed by the server")


def _pings(dbapi_conn: Any) -> bool:
    before = dbapi_conn.autocommit
    try:
        dbapi_conn.autocommit = True  # no BEGIN left open (as SQLAlchemy's do_ping)
        with dbapi_conn.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_conn.autocommit = before
    except psycopg2.Error:
        return False
    return True


def ping(eng: Engine) -> None:
    """Run `SELECT 1`; raises on any failure."""
    with eng.connect() as conn:
        conn.execute(text("SELECT 1"))


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
