"""A real gunicorn (2 workers) on its own PostgreSQL database and Redis db, for the
accuracy and propagation tests, plus a way to tell which worker holds a connection.

The database is created on the session server and dropped afterwards, so policies
written through the admin API never reach other tests; Redis uses db 6, which no
per-test fixture flushes.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import secrets
import sys
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from alembic import command
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from app.auth.keys import load_keyring
from app.auth.tokens import issue_access_token
from app.settings import Settings
from tests.conftest import alembic_config
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
LIMITER_REDIS_DB = 6
POLICIES = "/v1/admin/rate-limit-policies"


@contextlib.contextmanager
def dedicated_database(server_url: str, prefix: str) -> Iterator[str]:
    """A fresh database on the server of `server_url`, migrated to head, dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(server_url).set(database=name).render_as_string(hide_password=False)
    try:
        command.upgrade(alembic_config(url), "head")
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def socket_inodes(pid: int) -> set[str]:
    """Inodes of the sockets process `pid` holds open (from /proc/<pid>/fd)."""
    found: set[str] = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:["):
                found.add(target[8:-1])
    return found


def server_inode(server_port: int, client_port: int) -> str | None:
    """Inode of the server side of the loopback TCP connection from `client_port`."""
    local, remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        cols = line.split()
        if cols[1] == local and cols[2] == remote:
            return cols[9]
    return None


def cpu_ticks(pid: int) -> int:
    """User + system clock ticks a process has used (/proc/<pid>/stat fields 14, 15)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    fields = raw[raw.rfind(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


@dataclass
class LiveApi:
    """gunicorn serving `app.wsgi:application`, and an admin token for it."""

    process: ManagedProcess
    port: int
    settings: Settings
    admin_headers: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    def worker_pids(self) -> set[int]:
        """Pids of the master's live children."""
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return {int(p) for p in children}

    def token(self, subject: str, roles: list[str]) -> dict[str, str]:
        """An Authorization header signed with the workers' key."""
        s = self.settings
        token, _ = issue_access_token(
            keyring=load_keyring(s),
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=900,
            subject=subject,
            roles=roles,
            session_id=None,
        )
        return {"Authorization": f"Bearer {token}"}

    def put_policy(self, name: str, spec: dict[str, Any]) -> httpx.Response:
        """PUT a RateLimitPolicy through the admin API."""
        response = httpx.put(
            f"{self.url}{POLICIES}/{name}",
            json={"name": name, "spec": spec},
            headers=self.admin_headers,
            timeout=10,
        )
        assert response.status_code in (200, 201), response.text
        return response

    def delete_policy(self, name: str) -> httpx.Response:
        """DELETE a RateLimitPolicy through the admin API."""
        response = httpx.delete(
            f"{self.url}{POLICIES}/{name}", headers=self.admin_headers, timeout=10
        )
        assert response.status_code == 200, response.text
        return response

    def worker_of(self, conn: http.client.HTTPConnection) -> int | None:
        """The worker pid serving the (open, keep-alive) connection `conn`."""
        assert conn.sock is not None
        inode = server_inode(self.port, conn.sock.getsockname()[1])
        if inode is None:
            return None
        for pid in self.worker_pids():
            if inode in socket_inodes(pid):
                return pid
        return None

    def pinned_connections(self, path: str = "/livez") -> dict[int, http.client.HTTPConnection]:
        """One keep-alive connection held by each worker.

        An idle gthread worker may win every accept() in turn, so connections are opened
        in concurrent bursts until both workers hold one.
        """

        def connect(_: int) -> http.client.HTTPConnection:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
            conn.request("GET", path)
            conn.getresponse().read()
            return conn

        pinned: dict[int, http.client.HTTPConnection] = {}
        for _ in range(10):
            with ThreadPoolExecutor(16) as pool:
                opened = list(pool.map(connect, range(32)))
            for conn in opened:
                pid = self.worker_of(conn)
                if pid is not None and pid not in pinned:
                    pinned[pid] = conn
                else:
                    conn.close()
            if len(pinned) == 2:
                return pinned
        raise AssertionError(f"could not reach both workers: {sorted(pinned)}")


def get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    """One GET on a kept-alive connection: status, headers, parsed JSON body."""
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    return response.status, dict(response.getheaders()), json.loads(body) if body else None


@contextlib.contextmanager
def live_api(
    database_url: str,
    redis_url: str,
    work: Path,
    *,
    threads: int = 4,
    wsgi: str = "app.wsgi:application",
    **env_extra: str,
) -> Iterator[LiveApi]:
    """gunicorn with 2 workers on a dedicated database; both workers answering."""
    redis_db = make_url(redis_url).set(database=str(LIMITER_REDIS_DB))
    redis_target = redis_db.render_as_string(hide_password=False)
    secret = secrets.token_urlsafe(48)
    port = free_port()
    with dedicated_database(database_url, "rl_live") as db_url:
        settings = Settings(
            app_env="test", secret_key=secret, database_url=db_url, redis_url=redis_target
        )
        (work / "prometheus").mkdir(exist_ok=True)
        env = child_env(
            APP_ENV="test",
            SECRET_KEY=secret,
            DATABASE_URL=db_url,
            REDIS_URL=redis_target,
            PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS="2",
            GUNICORN_THREADS=str(threads),
            LOG_LEVEL="WARNING",
            **env_extra,
        )
        process = ManagedProcess(
            name="gunicorn",
            args=[
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "app/gunicorn_conf.py",
                wsgi,
            ],
            env=env,
            log_path=work / "gunicorn.log",
            cwd=ROOT,
            stop_timeout=30,
        ).start()
        api = LiveApi(process, port, settings)
        api.admin_headers = api.token("rl-admin", ["admin"])

        def both_answer() -> bool:
            process.check_alive()
            try:
                up = httpx.get(api.url + "/readyz", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False
            return up and len(api.worker_pids()) == 2

        try:
            wait_for(both_answer, timeout=90, interval=0.2, what="two gunicorn workers")
            import redis

            redis.Redis.from_url(redis_target).flushdb()
            yield api
        finally:
            process.stop()
