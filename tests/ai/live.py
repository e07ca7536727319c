"""gunicorn (one gthread worker) on its own database and Redis db, for AI tests that need
the real server: a worker's other threads, client disconnects, limits across requests.

One worker on purpose: breakers are per process, and "the same worker keeps answering"
needs every request on that one process. Providers are written through the admin API,
as an operator would; the database is dropped afterwards and Redis db 12 (which no
per-test fixture flushes) is flushed before use.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import redis
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool
from sqlmodel import Session, col, select

from app.ai.models import AIGeneration
from app.auth.keys import load_keyring
from app.auth.tokens import issue_access_token
from app.settings import Settings
from tests.ratelimit.live import dedicated_database
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT: Final = Path(__file__).resolve().parents[2]
AI_LIVE_REDIS_DB: Final = 12


@dataclass
class LiveAI:
    """A running gunicorn, its settings, and the Redis it counts in."""

    process: ManagedProcess
    url: str
    settings: Settings
    redis: redis.Redis

    def token(self, subject: str, roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
        """Authorization header of `subject`, signed with the workers' key."""
        s = self.settings
        token, _ = issue_access_token(
            keyring=load_keyring(s), issuer=s.jwt_issuer, audience=s.jwt_audience, ttl=900,
            subject=subject, roles=list(roles), session_id=None,
        )  # fmt: skip
        return {"Authorization": f"Bearer {token}"}

    def put_provider(self, name: str, spec: dict[str, Any]) -> None:
        """Store an AIProvider through the admin API and wait until generate can use it."""
        admin = self.token("ai-live-admin", ("admin",))
        response = httpx.put(
            f"{self.url}/v1/admin/ai-providers/{name}", json={"spec": spec}, headers=admin,
            timeout=10,
        )  # fmt: skip
        assert response.status_code in (200, 201), response.text
        model = spec["models"][0]["name"]
        probe = self.token(f"probe-{name}")

        def served() -> bool:
            answer = httpx.post(
                f"{self.url}/v1/ai/generate", json={"prompt": "ready?", "model": model},
                headers=probe, timeout=10,
            )  # fmt: skip
            return answer.status_code == 200

        wait_for(served, timeout=15, interval=0.1, what=f"provider {name} in the worker")

    def history(self, subject: str, **query: str) -> list[dict[str, Any]]:
        """`subject`'s history records (newest first)."""
        response = httpx.get(
            f"{self.url}/v1/ai/history", params={"limit": "100", **query},
            headers=self.token(subject), timeout=10,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        records: list[dict[str, Any]] = response.json()["data"]["data"]
        return records

    def rows(self, subject: str) -> list[AIGeneration]:
        """`subject`'s committed history rows, read from PostgreSQL (all columns)."""
        engine = create_engine(self.settings.database_url, poolclass=NullPool)
        try:
            with Session(engine) as session:
                statement = select(AIGeneration).where(col(AIGeneration.user_id) == subject)
                return list(session.exec(statement).all())
        finally:
            engine.dispose()

    def running(self, subject: str) -> int:
        """Concurrency slots `subject` holds right now (app/ai/concurrency.py)."""
        return int(self.redis.zcard(f"sapi:ai:running:user:{subject}"))


@contextlib.contextmanager
def live_ai(
    database_url: str, redis_url: str, work: Path, *, threads: int = 4, **env_extra: str
) -> Iterator[LiveAI]:
    """gunicorn with one worker on a dedicated database until the block ends."""
    redis_target = (
        make_url(redis_url)
        .set(database=str(AI_LIVE_REDIS_DB))
        .render_as_string(hide_password=False)
    )
    redis.Redis.from_url(redis_target).flushdb()
    secret = secrets.token_urlsafe(48)
    port = free_port()
    with dedicated_database(database_url, "ai_live") as db_url:
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
            GUNICORN_WORKERS="1",
            GUNICORN_THREADS=str(threads),
            RATE_LIMIT_DEFAULT_REQUESTS="1000000",
            LOG_LEVEL="WARNING",
            **env_extra,
        )
        process = ManagedProcess(
            name="gunicorn",
            args=[sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py",
                  "app.wsgi:application"],
            env=env,
            log_path=work / "gunicorn.log",
            cwd=ROOT,
            stop_timeout=30,
        ).start()  # fmt: skip
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            process.check_alive()
            with contextlib.suppress(httpx.HTTPError):
                return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
            return False

        client = redis.Redis.from_url(redis_target)
        try:
            wait_for(ready, timeout=90, interval=0.2, what="gunicorn /readyz")
            yield LiveAI(process, url, settings, client)
        finally:
            client.close()
            process.stop()


@dataclass
class Events:
    """What a client read of one SSE answer."""

    status: int
    events: list[tuple[str, dict[str, Any]]]
    seconds: float
    body: dict[str, Any] | None = None
    headers: httpx.Headers | None = None  # case-insensitive, as HTTP headers are

    @property
    def last(self) -> str:
        """Name of the last event ('' when none)."""
        return self.events[-1][0] if self.events else ""

    def named(self, name: str) -> list[dict[str, Any]]:
        """Payloads of the events called `name`."""
        return [data for event, data in self.events if event == name]


def stream(
    url: str,
    headers: dict[str, str],
    body: dict[str, Any],
    *,
    read_for: float = 15.0,
    stop_after: int | None = None,
) -> Events:
    """POST a streamed generate and read its events, for at most `read_for` seconds (then
    the connection is dropped) or until `stop_after` events (then the client leaves)."""
    started = time.monotonic()
    events: list[tuple[str, dict[str, Any]]] = []
    with (
        httpx.Client(timeout=httpx.Timeout(read_for, connect=5)) as client,
        client.stream(
            "POST", f"{url}/v1/ai/generate", json={**body, "stream": True}, headers=headers
        ) as response,
    ):
        if response.headers.get("content-type", "").startswith("application/json"):
            response.read()
            return Events(
                response.status_code, [], time.monotonic() - started, response.json(),
                response.headers,
            )  # fmt: skip
        name = "message"
        with contextlib.suppress(httpx.ReadTimeout):
            for line in response.iter_lines():
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    events.append((name, json.loads(line[6:])))
                    if stop_after is not None and len(events) >= stop_after:
                        break
                if time.monotonic() - started > read_for:
                    break
    return Events(response.status_code, events, time.monotonic() - started)
