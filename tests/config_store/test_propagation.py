"""A policy changed through the admin API reaches EVERY gunicorn
worker's snapshot within 1 s, on creation and on deletion.

Real gunicorn (3 sync workers, started the way the chart starts it), real PostgreSQL
and Redis. Each worker reports its pid, generation and the wall-clock instant it
installed its snapshot (`GET /v1/admin/config`); the test polls from several threads on
fresh connections until every worker pid has reported the new generation.
"""

from __future__ import annotations

import logging
import secrets
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from app.auth import users as user_service
from app.auth.state import auth_state
from app.config_store.models import ConfigAudit
from app.factory import create_app
from app.settings import Settings
from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 3
BUDGET = 1.0  # seconds: "within a second" (docs/config-store.md)
log = logging.getLogger(__name__)  # figures for the report: --log-cli-level=INFO

pytestmark = [pytest.mark.slow, pytest.mark.timeout(480)]
# Matches only /v2/notes, so the pollers of /v1/admin/config are never limited by it.
POLICY = {
    "rules": [
        {
            "name": "notes",
            "match": {"paths": ["/v2/notes"]},
            "key": "ip",
            "limits": [{"requests": 5, "window": "1m"}],
        }
    ]
}


@dataclass
class Server:
    """A running gunicorn and an admin's Authorization header for it."""

    process: ManagedProcess
    url: str
    headers: dict[str, str]

    def worker_pids(self) -> set[int]:
        """Pids of the master's live children."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(p) for p in children.read_text().split()}


def create_admin(database_url: str, redis_url: str, engine: Engine) -> tuple[str, str]:
    """A committed admin account; returns (email, password)."""
    email, password = f"admin-{secrets.token_hex(4)}@example.com", "pw-" + secrets.token_urlsafe(18)
    app = create_app(Settings(app_env="test", database_url=database_url, redis_url=redis_url))
    with app.app_context(), Session(engine) as session:
        user_service.create_user(
            session=session, auth=auth_state(), email=email, password=password, roles=("admin",)
        )
    return email, password


@pytest.fixture(scope="module")
def server(
    database_url: str,
    redis_url: str,
    migrated_engine: Engine,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    """gunicorn with WORKERS sync workers and a logged-in admin."""
    work = tmp_path_factory.mktemp("propagation")
    (work / "prometheus").mkdir()
    port = free_port()
    env = child_env(
        APP_ENV="test",
        # One key for every worker: tests derive the JWT signing key from it.
        SECRET_KEY=secrets.token_urlsafe(48),
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS=str(WORKERS),
        GUNICORN_THREADS="1",
        RATE_LIMIT_DEFAULT_ENABLED="false",  # the pollers below must not be throttled
        LOG_LEVEL="WARNING",
    )
    process = ManagedProcess(
        name="gunicorn",
        args=[
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "app/gunicorn_conf.py",
            "app.wsgi:application",
        ],
        env=env,
        log_path=work / "gunicorn.log",
        cwd=ROOT,
        stop_timeout=30,
    ).start()
    url = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            process.check_alive()
            try:
                return httpx.get(url + "/livez", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        # Importing the app costs ~6 s of CPU per worker: on a busy shared machine
        # (load 20 on 2 cores measured) booting 3 workers takes minutes, not seconds.
        wait_for(up, timeout=240, interval=0.2, what="gunicorn")
        email, password = create_admin(database_url, redis_url, migrated_engine)
        login = httpx.post(
            url + "/v1/auth/login", json={"email": email, "password": password}, timeout=10
        )
        assert login.status_code == 200, login.text
        token = login.json()["data"]["access_token"]
        yield Server(process, url, {"Authorization": f"Bearer {token}"})
    finally:
        process.stop()


def sample(server: Server) -> dict[str, object]:
    """One `GET /v1/admin/config` on a fresh connection (so workers take turns)."""
    response = httpx.get(server.url + "/v1/admin/config", headers=server.headers, timeout=5)
    assert response.status_code == 200, response.text
    data: dict[str, object] = response.json()["data"]
    return data


def until_every_worker(server: Server, done: object, *, timeout: float) -> dict[int, dict]:  # type: ignore[type-arg]
    """Poll from 6 threads until each worker pid returned a sample for which `done(s)`."""
    pids = server.worker_pids()
    first: dict[int, dict] = {}  # type: ignore[type-arg]
    lock = threading.Lock()
    started = time.perf_counter()

    def poll() -> None:
        while time.perf_counter() - started < timeout:
            with lock:
                if set(first) >= pids:
                    return
            s = sample(server)
            seen = time.perf_counter() - started
            pid = int(s["process"]["pid"])  # type: ignore[index]
            if done(s):  # type: ignore[operator]
                with lock:
                    first.setdefault(pid, {**s, "observed_after": seen})

    with ThreadPoolExecutor(max_workers=6) as pool:
        for future in [pool.submit(poll) for _ in range(6)]:
            future.result()
    assert set(first) >= pids, f"workers {pids - set(first)} never reported"
    return {pid: first[pid] for pid in pids}


def policies(s: dict[str, object]) -> list[str]:
    """Names of the rate-limit policies in a worker's snapshot."""
    return [p["name"] for p in s["objects"]["RateLimitPolicy"]]  # type: ignore[index]


def test_a_policy_change_reaches_every_worker_within_one_second(
    server: Server, migrated_engine: Engine
) -> None:
    name = f"prop-{secrets.token_hex(3)}"
    url = f"{server.url}/v1/admin/rate-limit-policies/{name}"
    # Warm-up: every worker has started its watcher and loaded a snapshot.
    until_every_worker(server, lambda s: s["loaded"], timeout=240)
    assert len(server.worker_pids()) == WORKERS
    try:
        for action in ("create", "delete"):
            wall, started = time.time(), time.perf_counter()
            if action == "create":
                response = httpx.put(url, json={"spec": POLICY}, headers=server.headers, timeout=5)
                assert response.status_code == 201, response.text
                generation = response.json()["data"]["generation"]
            else:
                response = httpx.delete(url, headers=server.headers, timeout=5)
                assert response.status_code == 200, response.text
                generation = response.json()["data"]["generation"]
            write_took = time.perf_counter() - started
            present = action == "create"
            reports = until_every_worker(
                server,
                lambda s, g=generation, p=present: (
                    s["generation"] >= g and (name in policies(s)) is p
                ),
                timeout=5,
            )
            audit = httpx.get(
                f"{server.url}/v1/admin/audit",
                params={"name": name, "action": action, "limit": 1},
                headers=server.headers,
                timeout=5,
            ).json()["data"]["data"][0]
            assert audit["generation"] == generation
            written = datetime.fromisoformat(audit["at"]).timestamp()
            answered = wall + write_took
            installed = {pid: r["loaded_at"] - answered for pid, r in reports.items()}  # type: ignore[operator]
            lag = {pid: r["loaded_at"] - written for pid, r in reports.items()}  # type: ignore[operator]
            observed = {pid: r["observed_after"] + write_took for pid, r in reports.items()}
            log.info(
                "%s: HTTP write %.1f ms; snapshot installed %s ms after the audited write, "
                "%s ms after the write's response (negative: before it); first observed by a "
                "poller %s ms after the write was sent",
                action,
                write_took * 1e3,
                sorted(round(v * 1e3, 1) for v in lag.values()),
                sorted(round(v * 1e3, 1) for v in installed.values()),
                sorted(round(v * 1e3, 1) for v in observed.values()),
            )
            # The worker's own install instant is the measurement; when the pollers first
            # see it depends on how fast a loaded machine serves them, so it is logged only.
            assert max(lag.values()) < BUDGET, lag
            assert max(installed.values()) < BUDGET, installed
    finally:
        httpx.delete(url, headers=server.headers, timeout=5)
        with Session(migrated_engine) as session:
            session.exec(delete(ConfigAudit).where(col(ConfigAudit.name) == name))  # type: ignore[call-overload]
            session.commit()
