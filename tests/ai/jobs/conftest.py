"""Job tests: a committed provider on the simulator, a producer app, real worker processes.

A worker is a separate process: it cannot see the per-test transaction, so these tests
commit their rows (unique names, deleted afterwards) and use their own Redis database
(the per-test `app` fixture flushes the default one).
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from celery import Celery
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from app.ai import credentials as ai_credentials
from app.ai.dead_letters.models import DeadLetter
from app.ai.jobs.models import AIJob, IdempotencyKey
from app.ai.models import AIGeneration
from app.config_store.extension import config_store
from app.config_store.models import ConfigAudit
from app.config_store.service import Source, delete_config, upsert_config
from app.factory import create_app
from app.settings import Settings
from tests.ai.support import Sim, bearer, provider_spec, run_sim
from tests.support.processes import child_env, wait_for

JOBS_REDIS_DB = 11
PROVIDER_KEY = "sk-jobs-0123456789abcdef"
#: Settings the producer and every worker share (environment variable form).
JOB_ENV: dict[str, str] = {
    "JOB_MAX_RETRIES": "2",
    "JOB_RETRY_BASE_SECONDS": "0.2",
    "JOB_RETRY_MAX_SECONDS": "1",
    "JOB_MAX_REDELIVERIES": "3",
    "AI_RETRY_MAX_WAIT": "1",
    "AI_REQUEST_DEADLINE": "40",
    "CELERY_VISIBILITY_TIMEOUT": "60",
    "CONFIG_POLL_INTERVAL": "0.5",
    "METRICS_ENABLED": "false",
    "LOG_JSON": "true",
}


def with_db(url: str, db: int) -> str:
    """`url` pointing at Redis database `db`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@pytest.fixture(scope="session")
def job_secret() -> str:
    """One SECRET_KEY for producer and workers: the credential keyring derives from it."""
    return secrets.token_urlsafe(48)


@pytest.fixture(scope="module")
def job_settings(
    database_url: str, redis_url: str, migrated_engine: Engine, job_secret: str
) -> Settings:
    """The producer's settings (the workers get the same through their environment)."""
    values: dict[str, Any] = {k.lower(): v for k, v in JOB_ENV.items()}
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=with_db(redis_url, JOBS_REDIS_DB),
        secret_key=job_secret,
        **values,
    )


def worker_env(settings: Settings) -> dict[str, str]:
    """Environment of a worker on the producer's database, Redis and secrets."""
    return child_env(
        APP_ENV="test",
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        SECRET_KEY=settings.secret(),
        **JOB_ENV,
    )


@pytest.fixture(scope="module")
def job_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sim]:
    """A simulator for this module."""
    with run_sim(tmp_path_factory.mktemp("job-sim"), name="jobs") as sim:
        yield sim


@dataclass
class Stack:
    """The producer side of the job tests."""

    app: Flask
    client: FlaskClient
    celery: Celery
    engine: Engine
    sim: Sim
    model: str
    owner: str
    admin: dict[str, str]

    def headers(self, **extra: str) -> dict[str, str]:
        """The test user's Authorization header plus `extra`."""
        with self.app.app_context():
            return {**bearer(self.owner), **extra}

    def job(self, job_id: str) -> AIJob:
        """The job row as committed now."""
        with Session(self.engine) as s:
            found = s.get(AIJob, uuid.UUID(job_id))
            assert found is not None
            return found

    def wait(self, job_id: str, status: str, timeout: float = 90.0) -> AIJob:
        """Wait until the job has `status`."""
        wait_for(lambda: self.job(job_id).status == status, timeout=timeout, what=status)
        return self.job(job_id)

    def submit(self, prompt: str = "one two three", **headers: str) -> str:
        """POST /v1/ai/jobs; returns the job id."""
        response = self.client.post(
            "/v1/ai/jobs",
            json={"prompt": prompt, "model": self.model},
            headers=self.headers(**headers),
        )
        assert response.status_code == 202, response.json
        job_id: str = response.json["data"]["id"]
        return job_id

    def generations(self, job_id: str) -> list[AIGeneration]:
        """History rows of one job."""
        from sqlmodel import select

        with Session(self.engine) as s:
            return list(
                s.exec(select(AIGeneration).where(AIGeneration.job_id == uuid.UUID(job_id))).all()
            )


@pytest.fixture(scope="module")
def stack(job_settings: Settings, migrated_engine: Engine, job_sim: Sim) -> Iterator[Stack]:
    """Producer app, a committed provider `jobs-<hex>` on the simulator, cleanup after."""
    suffix = uuid.uuid4().hex[:8]
    name, model = f"jobs-{suffix}", f"jobs-model-{suffix}"
    redis.Redis.from_url(job_settings.redis_url).flushdb()
    app = create_app(job_settings)
    with app.app_context(), Session(migrated_engine) as session:
        upsert_config(
            session=session, kind="AIProvider", name=name,
            spec=provider_spec(job_sim, models=(model,), maxRetries=0, timeoutSeconds=35),
            source=Source.admin(), actor="test",
        )  # fmt: skip
        ai_credentials.store_credential(
            session=session, name=name, api_key=PROVIDER_KEY, source=Source.admin(),
            actor="test", settings=job_settings,
        )  # fmt: skip
    store = config_store(app)
    store.refresh()
    owner = str(uuid.uuid4())
    with app.app_context():
        admin = bearer(roles=("admin",))
    yield Stack(
        app=app,
        client=app.test_client(),
        celery=app.extensions["celery"],
        engine=migrated_engine,
        sim=job_sim,
        model=model,
        owner=owner,
        admin=admin,
    )
    with app.app_context(), Session(migrated_engine) as session:
        delete_config(
            session=session, kind="AIProvider", name=name, source=Source.admin(), actor="test"
        )
    with migrated_engine.begin() as conn:
        # The audit trail is append-only for the app; tests sharing this database list it.
        conn.execute(delete(ConfigAudit).where(col(ConfigAudit.name) == name))
        job_ids = [
            row[0]
            for row in conn.execute(
                AIJob.__table__.select()
                .with_only_columns(AIJob.__table__.c.id)  # type: ignore[attr-defined]
                .where(AIJob.__table__.c.owner == f"user:{owner}")  # type: ignore[attr-defined]
            )
        ]
        conn.execute(delete(AIGeneration).where(col(AIGeneration.user_id) == owner))
        conn.execute(delete(IdempotencyKey).where(col(IdempotencyKey.owner) == f"user:{owner}"))
        conn.execute(
            delete(DeadLetter).where(col(DeadLetter.subject).in_([f"ai_job:{j}" for j in job_ids]))
        )
        conn.execute(delete(AIJob).where(col(AIJob.owner) == f"user:{owner}"))
    store.stop()
    app.extensions["db"].dispose()
    redis.Redis.from_url(job_settings.redis_url).flushdb()


@pytest.fixture
def fresh_sim(stack: Stack) -> Sim:
    """The module's simulator, reset before the test."""
    stack.sim.reset()
    return stack.sim


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """`wait_for` with a readable name at the call site."""
    return wait_for(condition, timeout=timeout, interval=0.1, what=what)


def elapsed(since: float) -> float:
    """Seconds since `since` (monotonic)."""
    return time.monotonic() - since
