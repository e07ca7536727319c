"""History is written behind the answer and never lost (docs/ai.md "History").

Real processes on private servers this module may stop: PostgreSQL and Redis (devstack),
the provider simulator and gunicorn with app/gunicorn_conf.py. The rows are committed
(other processes write them), in a database only this module uses.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest
from devstack import PostgresServer, RedisServer
from flask import Flask
from sqlmodel import Session, col, select

from app.ai import credentials as ai_credentials
from app.ai.history import queue as history_queue
from app.ai.history.tasks import DRAIN_TASK, drain_history
from app.ai.models import AIGeneration
from app.auth.keys import load_keyring
from app.auth.tokens import issue_access_token
from app.config_store.service import Source, upsert_config
from app.factory import create_app
from app.settings import Settings
from tests.ai.support import Sim, provider_spec, run_sim
from tests.conftest import ROOT, alembic_config
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

pytestmark = pytest.mark.slow

KEY: Final = "sk-durable-0123456789abcdef"
LEASE: Final = 2  # seconds: a killed drainer's batch is queued again this soon


@dataclass
class Stack:
    """Private servers, the settings every process shares, and an in-process app."""

    postgres: PostgresServer
    redis: RedisServer
    sim: Sim
    settings: Settings
    env: dict[str, str]
    app: Flask
    base: Path

    def token(self, subject: str) -> dict[str, str]:
        """Authorization header of a user `subject`."""
        s = self.settings
        token, _ = issue_access_token(
            keyring=load_keyring(s), issuer=s.jwt_issuer, audience=s.jwt_audience, ttl=600,
            subject=subject, roles=["user"], session_id=None,
        )  # fmt: skip
        return {"Authorization": f"Bearer {token}"}

    def rows(self, user: str) -> list[AIGeneration]:
        """Committed history rows of `user`."""
        with Session(self.app.extensions["db"]) as session:
            statement = select(AIGeneration).where(col(AIGeneration.user_id) == user)
            return list(session.exec(statement).all())

    def backlog(self) -> int:
        """Records in the history journal, pending or in flight."""
        return history_queue.journal(self.app).backlog()

    @contextlib.contextmanager
    def gunicorn(self, workers: int = 2) -> Iterator[tuple[ManagedProcess, str]]:
        """gunicorn on the private servers until the block ends (if still running)."""
        port = free_port()
        api = ManagedProcess(
            name="gunicorn",
            args=[sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py",
                  "app.wsgi:application"],
            env={**self.env, "GUNICORN_BIND": f"127.0.0.1:{port}",
                 "GUNICORN_WORKERS": str(workers), "GUNICORN_THREADS": "4",
                 "PROMETHEUS_MULTIPROC_DIR": str(self.base / "prom")},
            log_path=self.base / f"gunicorn-{port}.log",
            cwd=ROOT,
            stop_timeout=30,
        ).start()  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            api.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            return False

        try:
            wait_for(ready, timeout=90, interval=0.2, what="gunicorn /readyz")
            yield api, url
        finally:
            if api.running:
                api.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Private PostgreSQL and Redis, migrated, with a provider on a simulator."""
    base = tmp_path_factory.mktemp("history-durability")
    (base / "prom").mkdir()
    with contextlib.ExitStack() as exits:
        postgres = exits.enter_context(PostgresServer(base / "pg"))
        redis_server = exits.enter_context(RedisServer(base / "redis"))
        from alembic import command

        command.upgrade(alembic_config(postgres.url), "head")
        sim = exits.enter_context(run_sim(base, name="durable"))
        extra = {"APP_ENV": "test", "AI_HISTORY_LEASE_SECONDS": str(LEASE),
                 "RATE_LIMIT_DEFAULT_REQUESTS": "1000000", "LOG_JSON": "true",
                 "AI_MAX_CONCURRENT_PER_CALLER": "1000"}  # one user, 8 threads  # fmt: skip
        env = child_env(
            **extra, DATABASE_URL=postgres.url, REDIS_URL=redis_server.url,
            SECRET_KEY=secrets.token_urlsafe(48),
        )  # fmt: skip
        settings = Settings(
            database_url=postgres.url, redis_url=redis_server.url, secret_key=env["SECRET_KEY"],
            **{k.lower(): v for k, v in extra.items()},  # type: ignore[arg-type]
        )  # fmt: skip
        app = create_app(settings)
        exits.callback(app.extensions["db"].dispose)
        exits.callback(app.extensions["config_store"].stop)
        with app.app_context(), Session(app.extensions["db"]) as session:
            upsert_config(
                session=session, kind="AIProvider", name="primary",
                spec=provider_spec(sim, maxRetries=0), source=Source.admin(), actor="test",
            )  # fmt: skip
            ai_credentials.store_credential(
                session=session, name="primary", api_key=KEY, source=Source.admin(),
                actor="test", settings=settings,
            )  # fmt: skip
        yield Stack(postgres, redis_server, sim, settings, env, app, base)


def generate(url: str, headers: dict[str, str], prompt: str) -> str:
    """POST /v1/ai/generate; the history id of the answer."""
    response = httpx.post(
        f"{url}/v1/ai/generate", json={"prompt": prompt}, headers=headers, timeout=30
    )
    assert response.status_code == 200, response.text
    row_id: str = response.json()["data"]["id"]
    return row_id


def test_every_one_of_many_concurrent_generations_is_written_exactly_once(
    stack: Stack,
) -> None:
    user = f"many-{secrets.token_hex(4)}"
    headers = stack.token(user)
    with stack.gunicorn(workers=2) as (_, url), ThreadPoolExecutor(8) as pool:
        ids = list(pool.map(lambda i: generate(url, headers, f"call {i}"), range(60)))
        took = wait_for(lambda: len(stack.rows(user)) >= 60, timeout=15, what="60 rows")

    rows = stack.rows(user)
    assert sorted(str(r.id) for r in rows) == sorted(ids)  # all of them, none twice
    assert {r.outcome for r in rows} == {"success"}
    assert stack.backlog() == 0
    assert took < 5  # written behind the answers, not at beat's pace


@pytest.mark.parametrize("picked_up_by", ["a new gunicorn worker", "beat's sweep"])
def test_history_queued_while_postgresql_is_down_survives_killed_workers(
    stack: Stack, picked_up_by: str
) -> None:
    user = f"kill-{secrets.token_hex(4)}"
    headers = stack.token(user)
    with stack.gunicorn(workers=1) as (api, url):
        generate(url, headers, "warm up")  # providers and config loaded while PG is up
        wait_for(lambda: len(stack.rows(user)) == 1, timeout=15, what="the first row")
        stack.postgres.stop()
        try:
            ids = [generate(url, headers, f"while down {i}") for i in range(20)]
            # The worker's drainer holds them, failing to write, until it is killed.
            time.sleep(1)
            journal = history_queue.journal(stack.app)
            assert stack.backlog() == 20
            # Some are in flight: taken by the drainer, which keeps retrying that batch.
            assert journal.client.llen(journal.pending_key) < 20
            api.stop(signal.SIGKILL)
        finally:
            if not stack.postgres.running:
                stack.postgres.start()
    assert stack.backlog() == 20  # nothing went with the killed worker
    time.sleep(LEASE)  # the killed drainer's lease runs out

    if picked_up_by == "a new gunicorn worker":
        with stack.gunicorn(workers=1) as (_, url):
            ids.append(generate(url, headers, "after the restart"))
            wait_for(lambda: len(stack.rows(user)) == 22, timeout=15, what="22 rows")
    else:
        with stack.app.app_context():
            assert drain_history() == 20
        assert DRAIN_TASK in stack.app.extensions["celery"].conf.beat_schedule

    written = sorted(str(r.id) for r in stack.rows(user) if r.prompt != "warm up")
    assert written == sorted(ids)
    assert stack.backlog() == 0
