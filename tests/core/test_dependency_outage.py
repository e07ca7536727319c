"""PostgreSQL and Redis die and come back: the API answers 503 fast, then recovers alone.

Each test runs against its own PostgreSQL and Redis (not the session servers, which the
other tests share), takes one away (SIGKILL, graceful stop, or SIGSTOP freeze) and
measures how long the app takes to say so and to recover, in-process and under a real
gunicorn. Timings land in the JUnit report through `record_property`.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from devstack import ManagedServer, PostgresServer, RedisServer
from devstack.process import (
    descendants,
    die_with_parent,
    free_port,
    group_members,
    port_accepts,
    wait_gone,
)
from flask import Flask
from flask.testing import FlaskClient

from app.core import db
from app.database import engine
from app.factory import create_app
from app.settings import Settings
from tests.conftest import ROOT, alembic_config
from tests.support.accounts import signed_in

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

CONNECT_TIMEOUT = 2  # seconds, Settings.db_connect_timeout
READINESS_TIMEOUT = 1.0  # seconds, Settings.readiness_timeout
STATEMENT_TIMEOUT_MS = 1000  # Settings.db_statement_timeout_ms
# How long one libpq wait may block on a frozen server before the client gives up.
COMMAND_DEADLINE = STATEMENT_TIMEOUT_MS / 1000 + engine.STATEMENT_GRACE_S
# Scheduling noise on a shared 2-core machine, on top of the configured budget.
MARGIN = 0.75
RECOVERY_DEADLINE = 15.0  # seconds after the server answers again
NOTE = {"title": "written before the outage", "body": "must survive a SIGKILL"}
#: Shared by the in-process apps and the gunicorn workers, so a token one of them signs
#: (derived from SECRET_KEY in the test environment) is accepted by all.
SECRET_KEY = secrets.token_urlsafe(48)


class Outage:
    """One way a server goes away, and its way back."""

    def __init__(self, server: ManagedServer) -> None:
        self.server = server
        self._frozen: list[int] = []

    def begin(self, kind: str) -> None:
        """`killed`: SIGKILL (OOM kill, node loss); `stopped`: graceful shutdown;
        `frozen`: SIGSTOP on every process (stuck storage, VM pause): connections stay
        open and the kernel still ACKs, but nothing ever answers."""
        assert self.server.pid is not None
        # postgres backends call setsid(), so they are not in the server's process group.
        processes = [self.server.pid, *descendants(self.server.pid)]
        if kind == "killed":
            self.server.kill()
            assert not wait_gone(processes, timeout=10.0)
        elif kind == "stopped":
            self.server.stop()
            assert not wait_gone(processes, timeout=10.0)
        else:
            for pid in processes:
                os.kill(pid, signal.SIGSTOP)
            self._frozen = processes

    def end(self) -> None:
        """Bring the server back (restart, or SIGCONT what was frozen)."""
        for pid in self._frozen:
            os.kill(pid, signal.SIGCONT)
        self._frozen = []
        self.server.start()


OUTAGE_KINDS = ["killed", "stopped", "frozen"]


def db_request_budget(kind: str) -> float:
    """Seconds a DB-backed request may take to fail during an outage of `kind`."""
    if kind == "frozen":
        # A pooled connection's pre-ping waits out the command deadline, then the
        # reconnect waits out the connect timeout.
        return COMMAND_DEADLINE + CONNECT_TIMEOUT + MARGIN
    return CONNECT_TIMEOUT + MARGIN


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """A PostgreSQL only this module uses (and breaks), migrated to head."""
    server = PostgresServer(tmp_path_factory.mktemp("outage-pg") / "data")
    server.start()
    command.upgrade(alembic_config(server.url), "head")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis only this module uses (and breaks)."""
    server = RedisServer(tmp_path_factory.mktemp("outage-redis") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def pg_outage(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Outage]:
    """Both servers up; PostgreSQL restored afterwards even if the test fails mid-outage."""
    redis_server.start()
    outage = Outage(postgres.start())
    yield outage
    outage.end()


@pytest.fixture
def redis_outage(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Outage]:
    """Both servers up; Redis restored afterwards even if the test fails mid-outage."""
    postgres.start()
    outage = Outage(redis_server.start())
    yield outage
    outage.end()


def outage_settings(postgres: PostgresServer, redis_server: RedisServer) -> Settings:
    """Settings with the short budgets the assertions below hold the app to."""
    return Settings(
        app_env="test",
        database_url=postgres.url,
        redis_url=redis_server.url,
        secret_key=SECRET_KEY,
        db_connect_timeout=CONNECT_TIMEOUT,
        db_statement_timeout_ms=STATEMENT_TIMEOUT_MS,
        readiness_timeout=READINESS_TIMEOUT,
    )


def sign_in(application: Flask) -> dict[str, str]:
    """A user committed in the module's own PostgreSQL and a token `application` signs.

    The notes example, the DB-backed route here, needs a signed-in user; a JWT is checked
    without PostgreSQL, so during an outage the request still reaches the database.
    """
    with application.app_context():
        return signed_in(db.get_session())


@pytest.fixture
def outage_app(postgres: PostgresServer, redis_server: RedisServer) -> Iterator[Flask]:
    """One app for the whole test: recovery must not need a rebuild."""
    application = create_app(outage_settings(postgres, redis_server))
    yield application
    application.extensions[db.EXTENSION].dispose()


def timed(call: Callable[[], Any]) -> tuple[Any, float]:
    """Return `call()` and the seconds it took."""
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def wait_until(predicate: Callable[[], bool], deadline: float) -> float:
    """Poll `predicate` until true; return the seconds it took, fail after `deadline`."""
    started = time.perf_counter()
    while not predicate():
        elapsed = time.perf_counter() - started
        assert elapsed < deadline, f"not recovered after {elapsed:.1f}s"
        time.sleep(0.05)
    return time.perf_counter() - started


def assert_not_ready(status: int, body: dict[str, Any], headers: Any, failing: str) -> None:
    """`/readyz` says 503 and names exactly the broken dependency."""
    assert status == 503, body
    assert body["success"] is False
    assert body["error"]["code"] == "SYS_DEPENDENCY_UNAVAILABLE"
    assert body["error"]["details"]["failing"] == [failing]
    assert headers["Retry-After"].isdigit()


def assert_database_down(status: int, body: dict[str, Any], headers: Any) -> None:
    """A DB-backed route says 503 `DB_CONNECTION_ERROR` with `Retry-After`, no internals."""
    assert status == 503, body
    assert body["error"]["code"] == "DB_CONNECTION_ERROR"
    assert headers["Retry-After"].isdigit()
    assert "psycopg2" not in str(body) and "127.0.0.1" not in str(body)


_pages = itertools.count(1)


def uncached_listing() -> str:
    """The notes listing at an offset never asked before: a response-cache miss (the
    listing is cached per caller and query, docs/caching.md), so it needs PostgreSQL."""
    return f"/v1/notes?offset={next(_pages)}"


DB_REQUESTS: dict[str, Callable[[FlaskClient, dict[str, str]], Any]] = {
    "GET /v1/notes": lambda c, h: c.get(uncached_listing(), headers=h),
    "POST /v1/notes": lambda c, h: c.post("/v1/notes", json={"title": "during outage"}, headers=h),
    "GET /v1/notes/{id}": lambda c, h: c.get(
        "/v1/notes/00000000-0000-4000-8000-000000000000", headers=h
    ),
}


@pytest.mark.parametrize("kind", OUTAGE_KINDS)
def test_postgres_outage_gives_bounded_503s_and_recovers_without_rebuilding_the_app(
    kind: str,
    outage_app: Flask,
    pg_outage: Outage,
    record_property: Callable[[str, Any], None],
) -> None:
    client = outage_app.test_client()
    assert client.get("/readyz").status_code == 200
    me = sign_in(outage_app)
    created = client.post("/v1/notes", json=NOTE, headers=me)
    assert created.status_code == 201
    # The pool now holds a live connection.
    assert client.get("/v1/notes", headers=me).status_code == 200

    pg_outage.begin(kind)

    ready, elapsed = timed(lambda: client.get("/readyz"))
    assert_not_ready(ready.status_code, ready.json, ready.headers, "postgresql")
    assert elapsed < READINESS_TIMEOUT + MARGIN
    record_property("readyz_503_s", round(elapsed, 3))
    # Twice per route: the first meets the pool's stale connection, the second connects anew.
    for round_ in ("first", "again"):
        for name, call in DB_REQUESTS.items():
            response, elapsed = timed(lambda call=call: call(client, me))
            assert_database_down(response.status_code, response.json, response.headers)
            assert elapsed < db_request_budget(kind), name
            record_property(f"{name} {round_} 503_s", round(elapsed, 3))
    assert client.get("/livez").status_code == 200  # liveness never follows a dependency
    # The listing cached before the outage is still served, from Redis.
    cached = client.get("/v1/notes", headers=me)
    assert (cached.status_code, cached.headers["X-Cache"]) == (200, "HIT")

    pg_outage.end()

    recovered = wait_until(lambda: client.get("/readyz").status_code == 200, RECOVERY_DEADLINE)
    record_property("readyz_200_after_s", round(recovered, 3))
    listed = client.get("/v1/notes", headers=me)
    assert listed.status_code == 200
    assert created.json["data"]["id"] in [n["id"] for n in listed.json["data"]["data"]]
    after = client.post("/v1/notes", json={"title": "after the outage"}, headers=me)
    assert after.status_code == 201


@pytest.mark.parametrize("kind", OUTAGE_KINDS)
def test_redis_outage_makes_readyz_503_naming_redis_and_recovers(
    kind: str,
    outage_app: Flask,
    redis_outage: Outage,
    record_property: Callable[[str, Any], None],
) -> None:
    client = outage_app.test_client()
    assert client.get("/readyz").status_code == 200

    redis_outage.begin(kind)

    for _ in range(2):  # the second check meets the client's reconnect path
        ready, elapsed = timed(lambda: client.get("/readyz"))
        assert_not_ready(ready.status_code, ready.json, ready.headers, "redis")
        assert elapsed < READINESS_TIMEOUT + MARGIN
        record_property("readyz_503_s", round(elapsed, 3))
    assert client.get("/livez").status_code == 200

    redis_outage.end()

    recovered = wait_until(lambda: client.get("/readyz").status_code == 200, RECOVERY_DEADLINE)
    record_property("readyz_200_after_s", round(recovered, 3))


# -- the same under gunicorn, as `make dev` and the chart run it -----------------------


class Gunicorn:
    """A real `gunicorn -c app/gunicorn_conf.py app.wsgi:application` process group."""

    def __init__(self, env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}"}
        self.proc: subprocess.Popen[bytes] | None = None
        self.headers: dict[str, str] = {}  # sent with every request (a signed-in user's)

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Spawn the master and wait until a worker answers `/livez`."""
        argv = [sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py"]
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*die_with_parent(signal.SIGTERM), *argv, "app.wsgi:application"],
                cwd=ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 60
        while not (port_accepts(self.port) and self._livez()):
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, self.log_path.read_text()[-3000:]
            time.sleep(0.1)

    def _livez(self) -> bool:
        try:
            return httpx.get(f"{self.url}/livez", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def workers(self) -> set[int]:
        """Pids of the worker processes."""
        assert self.proc is not None
        return {pid for pid in group_members(self.proc.pid) if pid != self.proc.pid}

    def worker_behind(self, response: httpx.Response) -> int:
        """Pid of the worker holding the server end of `response`'s keep-alive connection."""
        _, client_port = response.extensions["network_stream"].get_extra_info("client_addr")
        inode = _tcp_inode(local_port=self.port, remote_port=client_port)
        for pid in self.workers():
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == f"socket:[{inode}]":
                        return pid
        raise AssertionError(f"no worker holds the connection from port {client_port}")

    def pinned_clients(self) -> dict[int, httpx.Client]:
        """One keep-alive client per worker, so each worker can be asked on purpose.

        The kernel hands a new connection to whichever worker accepts first: open
        connections until every worker holds one.
        """
        clients: dict[int, httpx.Client] = {}
        for _ in range(200):
            client = httpx.Client(base_url=self.url, timeout=30, headers=self.headers)
            pid = self.worker_behind(client.get("/livez"))
            if pid in clients:
                client.close()
            else:
                clients[pid] = client
            if len(clients) == len(self.workers()):
                return clients
        raise AssertionError(f"only reached workers {sorted(clients)}")

    def stop(self) -> None:
        """SIGTERM the master (graceful), SIGKILL the group if it lingers."""
        if self.proc is None:
            return
        members = group_members(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            for pid in members:
                os.kill(pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def gunicorn(
    pg_outage: Outage, postgres: PostgresServer, redis_server: RedisServer, tmp_path: Path
) -> Iterator[Gunicorn]:
    """gunicorn with 2 workers x 4 threads on the module's own servers."""
    settings = outage_settings(postgres, redis_server)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "SECRET"))}
    env.update(
        APP_ENV="test",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        DB_CONNECT_TIMEOUT=str(CONNECT_TIMEOUT),
        DB_STATEMENT_TIMEOUT_MS=str(STATEMENT_TIMEOUT_MS),
        READINESS_TIMEOUT=str(READINESS_TIMEOUT),
        SECRET_KEY=SECRET_KEY,
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="4",
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "prom"),
        PYTHONUNBUFFERED="1",
    )
    (tmp_path / "prom").mkdir()
    server = Gunicorn(env, tmp_path / "gunicorn.log")
    signer = create_app(settings)
    server.headers = sign_in(signer)
    signer.extensions[db.EXTENSION].dispose()
    server.start()
    yield server
    server.stop()


def _tcp_inode(*, local_port: int, remote_port: int) -> str:
    """Socket inode of the loopback TCP connection local_port <-> remote_port (/proc/net/tcp)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (int(addr.split(":")[1], 16) for addr in fields[1:3])
        if (local, remote) == (local_port, remote_port):
            return fields[9]
    raise AssertionError(f"no TCP connection {local_port} <-> {remote_port}")


Result = tuple[str, int, dict[str, Any], Any, float]


def burst(gunicorn: Gunicorn, paths: list[str], timeout: float) -> list[Result]:
    """Send the requests concurrently on fresh connections; each must finish in `timeout`."""

    def one(path: str) -> Result:
        started = time.perf_counter()
        response = httpx.get(f"{gunicorn.url}{path}", timeout=timeout, headers=gunicorn.headers)
        elapsed = time.perf_counter() - started
        return path, response.status_code, response.json(), response.headers, elapsed

    with ThreadPoolExecutor(max_workers=len(paths)) as pool:
        return list(pool.map(one, paths))


def ask_each_worker(clients: dict[int, httpx.Client], gunicorn: Gunicorn) -> list[Result]:
    """GET /readyz then /v1/notes through every worker's own connection, workers in parallel.

    In parallel so no connection idles past gunicorn's keep-alive (5 s) and moves.
    """

    def ask(pid: int, client: httpx.Client) -> list[Result]:
        results = []
        for path in ("/readyz", uncached_listing()):
            response, elapsed = timed(lambda p=path: client.get(p))
            assert gunicorn.worker_behind(response) == pid  # still the pinned worker
            results.append((path, response.status_code, response.json(), response.headers, elapsed))
        return results

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        per_worker = pool.map(ask, clients.keys(), clients.values())
        return [result for results in per_worker for result in results]


def assert_outage_answers(results: list[Result], budget: float) -> float:
    """Every answer is the right 503 within `budget`; return the slowest time."""
    for path, status, body, headers, elapsed in results:
        if path == "/readyz":
            assert_not_ready(status, body, headers, "postgresql")
        else:
            assert_database_down(status, body, headers)
        assert elapsed < budget, (path, elapsed)
    return max(elapsed for *_, elapsed in results)


@pytest.mark.parametrize("kind", ["killed", "frozen"])
def test_gunicorn_workers_answer_503_during_postgres_outage_and_never_hang(
    kind: str,
    gunicorn: Gunicorn,
    pg_outage: Outage,
    record_property: Callable[[str, Any], None],
) -> None:
    workers = gunicorn.workers()
    assert len(workers) == 2
    clients = gunicorn.pinned_clients()
    # Each worker loads its config snapshot and fills its pool before the outage.
    assert {status for _, status, *_ in ask_each_worker(clients, gunicorn)} == {200}

    pg_outage.begin(kind)

    # Each worker, on its own: the first call meets its pool's stale connection.
    slowest = assert_outage_answers(ask_each_worker(clients, gunicorn), db_request_budget(kind))
    record_property("each worker slowest 503_s", round(slowest, 3))
    # Then 16 concurrent requests on 8 threads: one may queue behind a round of failing
    # ones. A hang shows as an httpx timeout, long before gunicorn's 60 s worker timeout.
    paths = [p for _ in range(8) for p in ("/readyz", uncached_listing())]
    results = burst(gunicorn, paths, timeout=30)
    slowest = assert_outage_answers(results, 2 * db_request_budget(kind))
    record_property("burst of 16 slowest 503_s", round(slowest, 3))

    pg_outage.end()

    for client in clients.values():
        client.close()
    clients = gunicorn.pinned_clients()  # slow outage answers may have outlived keep-alive

    def every_worker_ok() -> bool:
        return {s for _, s, *_ in ask_each_worker(clients, gunicorn)} == {200}

    recovered = wait_until(every_worker_ok, RECOVERY_DEADLINE)
    record_property("every worker 200 after_s", round(recovered, 3))
    assert {s for _, s, *_ in burst(gunicorn, paths, timeout=10)} == {200}
    for client in clients.values():
        client.close()
    # No worker was killed for a timeout, or crashed and was replaced.
    assert gunicorn.workers() == workers
    log = gunicorn.log_path.read_text()
    assert "WORKER TIMEOUT" not in log
    assert "SYS_INTERNAL_ERROR" not in log and "Traceback" not in log
