"""Real PostgreSQL and Redis from the wheels (scripts/devstack) and the `make dev` supervisor."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import psycopg2
import pytest
import redis
import sqlalchemy as sa
from devstack import PostgresServer, RedisServer, ServerError, free_port
from devstack.process import descendants, group_members, is_alive
from devstack.supervisor import Supervisor

ROOT = Path(__file__).resolve().parent.parent


def _redis(server: RedisServer) -> redis.Redis:
    return redis.Redis.from_url(server.url, socket_timeout=1, socket_connect_timeout=1)


def _count(server: PostgresServer, sql: str) -> int:
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            row = cur.fetchone()
            return int(row[0])
    finally:
        conn.close()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PostgresServer]:
    """One server for the tests that do not kill it."""
    with PostgresServer(tmp_path_factory.mktemp("devstack") / "pg") as server:
        yield server


def test_postgres_url_works_with_sqlalchemy(postgres: PostgresServer) -> None:
    assert (
        postgres.url == f"postgresql+psycopg2://postgres@127.0.0.1:{postgres.port}/structured_api"
    )
    engine = sa.create_engine(postgres.url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT current_database()")).scalar() == "structured_api"
            assert conn.execute(sa.text("SHOW max_connections")).scalar() == "200"
            assert conn.execute(sa.text("SHOW fsync")).scalar() == "off"
    finally:
        engine.dispose()


def test_postgres_runs_unprivileged_when_started_by_root(postgres: PostgresServer) -> None:
    assert postgres.pid is not None
    uid = os.stat(f"/proc/{postgres.pid}").st_uid
    assert uid != 0 or os.geteuid() != 0


def test_postgres_start_is_idempotent(postgres: PostgresServer) -> None:
    pid = postgres.pid
    assert postgres.start() is postgres
    assert postgres.pid == pid


def test_postgres_creates_extra_databases(postgres: PostgresServer) -> None:
    url = postgres.create_database("extra_db")
    assert url.endswith("/extra_db")
    assert postgres.create_database("extra_db") == url  # already there: no error
    assert _count(postgres, "SELECT count(*) FROM pg_database WHERE datname = 'extra_db'") == 1
    postgres.drop_database("extra_db")
    assert _count(postgres, "SELECT count(*) FROM pg_database WHERE datname = 'extra_db'") == 0


def test_postgres_keeps_data_and_port_across_stop_and_start(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server:
        port = server.port
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE kept (x int); INSERT INTO kept VALUES (1)")
        conn.close()
        server.stop()
        assert not server.running and server.pid is None
        with pytest.raises(psycopg2.OperationalError):
            server.connect()
        t0 = time.monotonic()
        server.start()
        warm = time.monotonic() - t0
        assert server.port == port
        assert _count(server, "SELECT count(*) FROM kept") == 1
    assert warm < 10, f"warm start took {warm:.1f}s"


@pytest.mark.chaos
def test_postgres_restarts_after_kill_9_with_committed_data(tmp_path: Path) -> None:
    with PostgresServer(tmp_path / "pg") as server:
        conn = server.connect()
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE survived (x int)")
            cur.execute("INSERT INTO survived VALUES (42)")  # autocommit: acknowledged
        conn.close()
        old_pid, port = server.pid, server.port
        assert old_pid is not None
        server.kill()

        assert not server.running
        assert not is_alive(old_pid)
        assert group_members(old_pid) == []  # backends went down with the postmaster
        assert (tmp_path / "pg" / "postmaster.pid").exists()  # stale lock left behind
        with pytest.raises(psycopg2.OperationalError):
            server.connect()

        server.start()
        assert server.port == port and server.pid != old_pid
        assert _count(server, "SELECT x FROM survived") == 42


@pytest.mark.chaos
def test_redis_answers_and_restarts_after_kill_9(tmp_path: Path) -> None:
    with RedisServer(tmp_path / "redis") as server:
        client = _redis(server)
        assert client.ping() is True
        assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        assert client.config_get("save") == {"save": ""}
        client.set("k", "v")
        port = server.port

        server.kill()
        assert not server.running
        with pytest.raises(redis.ConnectionError):
            _redis(server).ping()

        server.start()
        assert server.port == port
        client = _redis(server)
        assert client.ping() is True
        assert client.get("k") is None  # no persistence on purpose
        client.close()


def test_redis_stop_is_graceful_and_start_reuses_port(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    server.start()
    port, pid = server.port, server.pid
    server.stop()
    assert pid is not None and not is_alive(pid)
    server.start()
    try:
        assert server.port == port
        assert server.command("PING") == b"PONG"
    finally:
        server.stop()


def test_auto_chosen_port_taken_by_someone_else_moves_to_another(tmp_path: Path) -> None:
    server = RedisServer(tmp_path / "redis")
    squatter = socket.socket()
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    squatter.bind(("127.0.0.1", server.port))
    squatter.listen()
    try:
        with server:
            assert server.port != squatter.getsockname()[1]
            assert _redis(server).ping() is True
    finally:
        squatter.close()


def test_given_port_in_use_is_an_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        server = RedisServer(tmp_path / "redis", port=squatter.getsockname()[1])
        with pytest.raises(ServerError, match="already in use"):
            server.start()
    assert not server.running


def test_postgres_refuses_a_non_empty_foreign_directory(tmp_path: Path) -> None:
    (tmp_path / "pg").mkdir()
    (tmp_path / "pg" / "notes.txt").write_text("mine")
    with pytest.raises(ServerError, match="neither empty nor"):
        PostgresServer(tmp_path / "pg").start()


def test_free_port_hands_out_distinct_ports() -> None:
    ports = {free_port() for _ in range(20)}
    assert len(ports) == 20


@pytest.mark.slow
def test_servers_die_with_the_process_that_started_them(tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        import sys, time
        sys.path.insert(0, {str(ROOT / "scripts")!r})
        from devstack import PostgresServer, RedisServer
        pg = PostgresServer({str(tmp_path / "pg")!r}).start()
        rd = RedisServer({str(tmp_path / "redis")!r}).start()
        print(pg.pid, rd.pid, flush=True)
        time.sleep(300)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 2 and all(is_alive(p) for p in pids)
        owner.kill()  # SIGKILL: no cleanup code runs in the owner
        owner.wait()
        deadline = time.monotonic() + 15
        while any(is_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(is_alive(p) for p in pids)
        assert group_members(pids[0]) == []
    finally:
        owner.kill()
        owner.wait()


def test_supervisor_kills_what_ignores_sigterm_and_its_group(tmp_path: Path) -> None:
    sup = Supervisor(cwd=tmp_path, env=dict(os.environ), log_dir=tmp_path / "logs")
    stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
        "print('up', flush=True); time.sleep(300)"  # fmt: skip
    child = sup.spawn("stubborn", ["sh", "-c", f'{sys.executable} -c "{stubborn}" & wait'])
    polite = sup.spawn("polite", [sys.executable, "-c", "import time; time.sleep(300)"])
    deadline = time.monotonic() + 10
    while b"up" not in child.log_path.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.05)
    members = group_members(child.proc.pid)
    assert len(members) == 2

    assert sup.stop_all(grace=1.0) == ["stubborn"]
    assert polite.returncode == -signal.SIGTERM
    assert not any(is_alive(p) for p in members)


@pytest.fixture
def stub_project(tmp_path: Path) -> Path:
    """A copy of scripts/ next to throwaway app modules, so dev.py runs without the real app."""
    shutil.copytree(
        ROOT / "scripts", tmp_path / "scripts", ignore=shutil.ignore_patterns("__pycache__")
    )
    app = tmp_path / "app"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "wsgi.py").write_text(
        "from flask import Flask\n"
        "application = Flask(__name__)\n"
        "@application.get('/livez')\n"
        "def livez():\n"
        "    return {'ok': True}\n"
    )
    (app / "gunicorn_conf.py").write_text("workers = 2\n")
    (app / "worker.py").write_text(
        "import os\n"
        "from celery import Celery\n"
        "celery_app = Celery('stub', broker=os.environ['REDIS_URL'])\n"
    )
    (tmp_path / "alembic.ini").write_text("[alembic]\nscript_location = migrations\n")
    versions = tmp_path / "migrations" / "versions"
    versions.mkdir(parents=True)
    (tmp_path / "migrations" / "env.py").write_text(
        "import os\n"
        "from alembic import context\n"
        "from sqlalchemy import create_engine\n"
        "with create_engine(os.environ['DATABASE_URL']).connect() as conn:\n"
        "    context.configure(connection=conn, target_metadata=None)\n"
        "    with context.begin_transaction():\n"
        "        context.run_migrations()\n"
    )
    (versions / "0001_stub.py").write_text(
        "from alembic import op\n"
        "import sqlalchemy as sa\n"
        "revision = '0001'\n"
        "down_revision = None\n"
        "def upgrade():\n"
        "    op.create_table('stub', sa.Column('id', sa.Integer, primary_key=True))\n"
    )
    return tmp_path


def _start_dev(project: Path, port: int) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        PORT=str(port),
        DEV_POSTGRES_PORT=str(free_port()),
        DEV_REDIS_PORT=str(free_port()),
        DEV_STOP_GRACE="10",
        AI_SIM="0",  # the stub project has no `flask ai dev-provider`
        PATH=f"{Path(sys.executable).parent}:{env.get('PATH', '')}",
    )
    return subprocess.Popen(
        [sys.executable, str(project / "scripts" / "dev.py")],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 90) -> str:
    """Collect the output of `proc` until a line contains `marker` (fails on timeout/EOF)."""
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            return "".join(seen)
    raise AssertionError(f"{marker!r} not seen; output:\n{''.join(seen)}")


@pytest.mark.slow
def test_dev_runs_the_stack_and_stops_it_cleanly_on_sigterm(stub_project: Path) -> None:
    port = free_port()
    dev = _start_dev(stub_project, port)
    try:
        out = _read_until(dev, "Ctrl-C stops everything")
        assert f"http://127.0.0.1:{port}/docs" in out
        assert "postgresql+psycopg2://postgres@127.0.0.1:" in out
        assert "(started here, data .dev/postgres)" in out
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/livez", timeout=5) as resp:
            assert resp.status == 200
        stack = descendants(dev.pid)
        assert len(stack) >= 6  # postgres (+ its helpers), redis, api x3, worker, beat

        dev.send_signal(signal.SIGTERM)
        rest, _ = dev.communicate(timeout=60)
        assert dev.returncode == 0, rest
        assert "dev: stopped" in rest
        assert [p for p in stack if is_alive(p)] == []
    finally:
        dev.kill()
        dev.wait()


@pytest.mark.slow
def test_dev_stops_everything_when_a_child_dies(stub_project: Path) -> None:
    dev = _start_dev(stub_project, free_port())
    try:
        _read_until(dev, "Ctrl-C stops everything")
        stack = descendants(dev.pid)
        beat = next(
            p
            for p in stack
            if b" beat " in Path(f"/proc/{p}/cmdline").read_bytes().replace(b"\0", b" ")
        )
        os.kill(beat, signal.SIGKILL)
        rest, _ = dev.communicate(timeout=60)
        assert dev.returncode == 1
        assert "beat exited unexpectedly" in rest
        assert [p for p in stack if is_alive(p)] == []
    finally:
        dev.kill()
        dev.wait()


def test_the_stop_flag_can_be_raised_by_a_signal_during_its_wait() -> None:
    """`make dev` stops on a signal whose handler raises SignalFlag while the main thread
    waits on it. With threading.Event there, the handler's set() waits for the lock the
    interrupted wait() holds: the stack once ignored a SIGTERM for good. Here a timer
    signal lands thousands of times inside short waits; every round must end."""
    script = textwrap.dedent(
        """
        import signal, time
        from devstack.process import SignalFlag

        flag = SignalFlag()

        def handler(_signum, _frame):
            flag.set()

        signal.signal(signal.SIGALRM, handler)
        signal.setitimer(signal.ITIMER_REAL, 0.0002, 0.0002)
        rounds, end = 0, time.monotonic() + 1.5
        while time.monotonic() < end:
            if flag.wait(0.0001):
                rounds += 1
                flag = SignalFlag()
        signal.setitimer(signal.ITIMER_REAL, 0)
        print(rounds, flush=True)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "scripts")}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 100
