"""Real PostgreSQL and Redis servers from wheels in the venv, for `make dev` and the tests.

    with PostgresServer(tmp / "pg") as pg, RedisServer(tmp / "redis") as redis:
        engine = create_engine(pg.url)  # postgresql+psycopg2://postgres@127.0.0.1:<port>/...
        client = Redis.from_url(redis.url)

Linux only (prctl, /proc). As root, PostgreSQL runs as the system user `embedded_postgres`.
New clusters are copied from one initdb output cached in $TMPDIR/devstack-<uid>/.
"""

from .postgres_server import DEFAULT_DATABASE, PostgresServer
from .process import free_port
from .redis_server import RedisServer
from .server import ManagedServer, ServerError

__all__ = [
    "DEFAULT_DATABASE",
    "ManagedServer",
    "PostgresServer",
    "RedisServer",
    "ServerError",
    "free_port",
]
