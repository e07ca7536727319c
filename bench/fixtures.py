"""What the pipeline benchmark needs before any load: servers, schema, rows and tokens.

PostgreSQL and Redis come from the wheels (scripts/devstack) unless DATABASE_URL /
REDIS_URL are set; the AI provider is the local simulator (scripts/provider_sim). Rows
are written with the project's own services, as a deployment's admin would.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from devstack import PostgresServer, RedisServer, free_port  # noqa: E402

SIM_MODEL: Final = "sim-small"
SIM_KEY: Final = "sk-bench-" + secrets.token_hex(12)


@dataclass
class Fixtures:
    """URLs, the environment every app gets, and the ids and tokens scenarios use."""

    env: dict[str, str]
    sim_url: str
    note_id: str
    bearer: str  # our access token (Ed25519, role user)
    user_id: str  # the user both tokens name (ours above, the usual stack's in bench/run.py)
    dependency_pids: list[int]  # PostgreSQL, Redis, simulator we started (for CPU figures)
    sim_pid: int = 0  # the simulator alone (also in dependency_pids)


def servers(stack: ExitStack, work: Path, pids: list[int]) -> tuple[str, str]:
    """PostgreSQL and Redis URLs, starting servers only for what the environment lacks."""
    database_url, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not database_url:
        pg = stack.enter_context(PostgresServer(work / "pg"))
        database_url = pg.url
        pids.append(pg.pid or 0)
    if not redis_url:
        server = stack.enter_context(RedisServer(work / "redis"))
        redis_url = server.url
        pids.append(server.pid or 0)
    return database_url, redis_url


def simulator(stack: ExitStack, work: Path, pids: list[int]) -> str:
    """Start the provider simulator; its base URL once it answers."""
    port = free_port()
    log = (work / "provider-sim.log").open("wb")
    stack.callback(log.close)
    proc = subprocess.Popen(
        [sys.executable, "-m", "provider_sim", "--port", str(port)],
        env={**os.environ, "PYTHONPATH": str(ROOT / "scripts")},
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
    )  # fmt: skip

    def stop() -> None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    stack.callback(stop)
    pids.append(proc.pid)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/_control/health", timeout=1).status_code == 200:
                return url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise SystemExit(
        f"provider simulator did not answer:\n{(work / 'provider-sim.log').read_text()}"
    )


def prepare(stack: ExitStack, work: Path) -> Fixtures:
    """Servers, migrations, the simulator, a provider, one note and a token."""
    pids: list[int] = []
    database_url, redis_url = servers(stack, work, pids)
    sim_url = simulator(stack, work, pids)
    secret = secrets.token_urlsafe(48)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "scripts")]),
        "APP_ENV": "test",
        "SECRET_KEY": secret,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BENCH_JWT_SECRET": secrets.token_urlsafe(32),
        # The default policy checks every request against a limit it never reaches, so
        # each request pays for the rate-limit script without being refused.
        "RATE_LIMIT_DEFAULT_REQUESTS": "10000000",
        # Likewise the per-caller generation cap: checked, never reached by one caller.
        "AI_MAX_CONCURRENT_PER_CALLER": "1000",
        "LOG_LEVEL": "INFO",  # one JSON access line per request, as deployed
        "METRICS_ENABLED": "true",
        "TRACING_ENABLED": "false",  # the chart's default (values.yaml tracing.enabled)
        "AI_ALLOWED_HTTP_HOSTS": "127.0.0.1",  # the simulator speaks plain http
    }
    from alembic import command
    from alembic.config import Config

    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.attributes.update(database_url=database_url, configure_logger=False)
    command.upgrade(cfg, "head")
    note_id, bearer, user_id = _rows(env, sim_url)
    return Fixtures(
        env, sim_url, note_id, bearer, user_id, [p for p in pids if p], sim_pid=pids[-1]
    )


def _rows(env: dict[str, str], sim_url: str) -> tuple[str, str, str]:
    from sqlmodel import Session

    from app.ai import credentials as ai_credentials
    from app.auth.keys import load_keyring
    from app.auth.models.user import User
    from app.auth.tokens import issue_access_token
    from app.config_store.service import Source, upsert_config
    from app.custom.notes.models import NoteCreate
    from app.custom.notes.services import create_note
    from app.factory import create_app
    from app.settings import Settings

    settings = Settings(
        app_env="test",
        secret_key=env["SECRET_KEY"],
        database_url=env["DATABASE_URL"],
        redis_url=env["REDIS_URL"],
        log_level="WARNING",
    )
    app = create_app(settings)
    with app.app_context(), Session(app.extensions["db"]) as session:
        spec = {
            "type": "OpenAICompatible", "baseURL": f"{sim_url}/v1",
            "credentialsSecretRef": {"name": "bench-key"},
            "models": [{"name": SIM_MODEL, "inputCostPer1M": "0.15", "outputCostPer1M": "0.60"}],
            "maxRetries": 0, "timeoutSeconds": 10,
        }  # fmt: skip
        upsert_config(
            session=session, kind="AIProvider", name="bench", spec=spec,
            source=Source.admin(), actor="bench",
        )  # fmt: skip
        ai_credentials.store_credential(
            session=session, name="bench", api_key=SIM_KEY, source=Source.admin(),
            actor="bench", settings=settings,
        )  # fmt: skip
        # A real account: notes belong to a user (their reads and writes need its token).
        email = f"bench-{secrets.token_hex(4)}@example.com"
        user = User(email=email, password_hash="x", roles=["user"])
        session.add(user)
        session.commit()
        note = create_note(
            session=session,
            owner_id=user.id,
            data=NoteCreate(title="benchmark", body="read under load " * 8),
        )
        note_id, user_id = str(note.id), str(user.id)
    app.extensions["config_store"].stop()
    app.extensions["db"].dispose()
    token, _ = issue_access_token(
        keyring=load_keyring(settings), issuer=settings.jwt_issuer,
        audience=settings.jwt_audience, ttl=6 * 3600, subject=user_id, roles=["user"],
        session_id=None,
    )  # fmt: skip
    return note_id, f"Bearer {token}", user_id
