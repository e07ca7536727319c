"""The whole system as deployed, on private servers this package may break.

PostgreSQL and Redis only these tests use (devstack), the provider simulator, gunicorn
with app/gunicorn_conf.py (2 workers x 4 threads), a prefork Celery worker and beat,
all real processes on loopback. A committed AIProvider on the simulator serves jobs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import kombu.pools
import pytest
from alembic import command
from celery import Celery
from devstack import PostgresServer, RedisServer
from sqlalchemy import Engine, create_engine
from sqlmodel import Session

from app.ai import credentials as ai_credentials
from app.auth.keys import load_keyring
from app.auth.models.user import User
from app.auth.tokens import issue_access_token
from app.config_store.service import Source, upsert_config
from app.factory import create_app
from app.settings import Settings
from tests.ai.support import Sim, provider_spec, run_sim
from tests.conftest import ROOT, alembic_config
from tests.support.processes import (
    CeleryWorker,
    ManagedProcess,
    celery_worker,
    child_env,
    free_port,
    wait_for,
)

MODEL: Final = "chaos-model"
PROVIDER: Final = "chaos"
PROVIDER_KEY: Final = "sk-chaos-" + "0" * 16
#: Settings every process shares, as environment variables. The visibility timeout is
#: Settings' minimum, so a job whose worker was SIGKILLed is redelivered within a minute;
#: the sweep re-sends a job stored while the broker was down after 10 s (its minimum).
ENV: Final[dict[str, str]] = {
    "APP_ENV": "test",
    "CELERY_VISIBILITY_TIMEOUT": "60",
    "JOB_REQUEUE_AFTER_SECONDS": "10",
    "JOB_MAX_RETRIES": "5",
    "JOB_RETRY_BASE_SECONDS": "0.5",
    "JOB_RETRY_MAX_SECONDS": "5",
    "AI_REQUEST_DEADLINE": "20",
    "CONFIG_POLL_INTERVAL": "1",
    "LOG_JSON": "true",
    # The load comes from one loopback address standing for many clients: the default
    # per-IP limit would turn it into 429s that say nothing about the faults.
    "RATE_LIMIT_DEFAULT_REQUESTS": "1000000",
    # ...and one caller runs every concurrent generation: keep its cap above the load.
    "AI_MAX_CONCURRENT_PER_CALLER": "1000",
}


def chaos_duration() -> float:
    """Seconds of load around each fault: CHAOS_DURATION (`make chaos`), else the short form."""
    return float(os.environ.get("CHAOS_DURATION", "4"))


@dataclass
class System:
    """Handles on every process of the deployment under test."""

    postgres: PostgresServer
    redis: RedisServer
    sim: Sim
    api: ManagedProcess
    api_url: str
    engine: Engine
    celery: Celery
    env: dict[str, str]
    token: str
    log_dir: Path

    def gunicorn_workers(self) -> set[int]:
        """Pids of gunicorn's worker processes (children of the master)."""
        children = Path(f"/proc/{self.api.pid}/task/{self.api.pid}/children").read_text()
        return {int(pid) for pid in children.split()}


def _provider(settings: Settings, sim: Sim) -> None:
    app = create_app(settings)
    with app.app_context(), Session(app.extensions["db"]) as session:
        upsert_config(
            session=session, kind="AIProvider", name=PROVIDER,
            spec=provider_spec(sim, models=(MODEL,), maxRetries=0, timeoutSeconds=10),
            source=Source.admin(), actor="chaos",
        )  # fmt: skip
        ai_credentials.store_credential(
            session=session, name=PROVIDER, api_key=PROVIDER_KEY, source=Source.admin(),
            actor="chaos", settings=settings,
        )  # fmt: skip
    app.extensions["config_store"].stop()
    app.extensions["db"].dispose()


def _token(settings: Settings, engine: Engine) -> str:
    # A real account: the notes the load writes belong to it (users.id foreign key).
    email = f"chaos-{secrets.token_hex(4)}@example.com"
    user = User(email=email, password_hash="x", roles=["user"])
    with Session(engine, expire_on_commit=False) as session:
        session.add(user)
        session.commit()
    token, _ = issue_access_token(
        keyring=load_keyring(settings), issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, ttl=3600, subject=str(user.id),
        roles=["user"], session_id=None,
    )  # fmt: skip
    return f"Bearer {token}"


def _gunicorn(env: dict[str, str], log_dir: Path) -> tuple[ManagedProcess, str]:
    port = free_port()
    api = ManagedProcess(
        name="gunicorn",
        args=[sys.executable, "-m", "gunicorn", "-c", "app/gunicorn_conf.py",
              "app.wsgi:application"],
        env={**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": "2",
             "GUNICORN_THREADS": "4", "PROMETHEUS_MULTIPROC_DIR": str(log_dir / "prom")},
        log_path=log_dir / "gunicorn.log",
        cwd=ROOT,
        stop_timeout=30,
    ).start()  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        api.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
        return False

    wait_for(ready, timeout=90, interval=0.2, what="gunicorn /readyz")
    return api, url


@dataclass
class Deployment:
    """What `start_deployment` started: the API, beat, and handles the tests use."""

    sim: Sim
    api: ManagedProcess
    api_url: str
    beat: ManagedProcess
    engine: Engine
    celery: Celery
    env: dict[str, str]  # the environment of worker processes (metrics off)
    token: str


def start_deployment(
    stack: contextlib.ExitStack[bool | None],
    base: Path,
    postgres: PostgresServer,
    *,
    name: str,
    **redis_env: str,
) -> Deployment:
    """The simulator, gunicorn, a producer app and Celery beat on `postgres` and the Redis
    that `redis_env` names (REDIS_URL, and REDIS_SENTINEL_PASSWORD for Sentinel); each is
    stopped by `stack`."""
    sim = stack.enter_context(run_sim(base, name=name))
    env = child_env(
        **ENV, DATABASE_URL=postgres.url, **redis_env, SECRET_KEY=secrets.token_urlsafe(48)
    )
    settings = Settings(
        database_url=postgres.url, secret_key=env["SECRET_KEY"],
        **{k.lower(): v for k, v in {**ENV, **redis_env}.items()},  # type: ignore[arg-type]
    )  # fmt: skip
    _provider(settings, sim)
    api, url = _gunicorn(env, base)
    stack.callback(api.stop)
    producer = create_app(settings)
    stack.callback(producer.extensions["db"].dispose)
    stack.callback(producer.extensions["config_store"].stop)
    engine = create_engine(postgres.url, pool_pre_ping=True)
    stack.callback(engine.dispose)
    quiet = {**env, "METRICS_ENABLED": "false"}  # no worker metrics port to collide
    beat = ManagedProcess(
        name="celery beat",
        args=[sys.executable, "-m", "celery", "-A", "app.worker:celery_app", "beat",
              "--loglevel=INFO", f"--schedule={base / 'beat-schedule'}"],
        env=quiet, log_path=base / "beat.log", cwd=ROOT,
    ).start()  # fmt: skip
    stack.callback(beat.stop)
    return Deployment(
        sim, api, url, beat, engine, producer.extensions["celery"], quiet,
        _token(settings, engine),
    )  # fmt: skip


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory) -> Iterator[System]:
    """Start everything; stop it all afterwards (a leaked process fails the teardown)."""
    base = tmp_path_factory.mktemp("chaos")
    (base / "prom").mkdir()
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer(base / "pg"))
        redis_server = stack.enter_context(RedisServer(base / "redis"))
        command.upgrade(alembic_config(postgres.url), "head")
        deployment = start_deployment(
            stack, base, postgres, name="chaos-sim", REDIS_URL=redis_server.url
        )
        api, url = deployment.api, deployment.api_url
        yield System(
            postgres=postgres,
            redis=redis_server,
            sim=deployment.sim,
            api=api,
            api_url=url,
            engine=deployment.engine,
            celery=deployment.celery,
            env=deployment.env,
            token=deployment.token,
            log_dir=base,
        )


@contextlib.contextmanager
def worker(system: System, name: str) -> Iterator[CeleryWorker]:
    """A prefork Celery worker (2 children) on the system's broker."""
    # kombu keeps process-wide producer pools keyed by broker URL (kombu.pools), so even a
    # new Celery app would ping on a connection that predates a Redis restart and fail.
    kombu.pools.reset()
    pinger = Celery("chaos-ping", broker=system.redis.url)
    try:
        with celery_worker(
            pinger, env=system.env, log_dir=system.log_dir / name, pool="prefork", concurrency=2
        ) as w:
            yield w
    finally:
        pinger.close()
