"""The deployment on Redis Sentinel, for the failover test and bench/redis_failover.py.

PostgreSQL (devstack), a Redis primary with replicas and three sentinels from the same
redis-server binary (devstack.sentinel), the provider simulator, gunicorn with
app/gunicorn_conf.py (2 workers x 4 threads), a prefork Celery worker and beat, every
process configured with one `REDIS_URL=redis+sentinel://...` and `REDIS_SENTINEL_PASSWORD`.

`failover(system, load)` SIGKILLs the primary under the load and measures what clients
saw: the first and last failed request (their span is the failover gap), the slowest
answer, how long the sentinels took to promote a replica, and the error codes.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from alembic import command
from celery import Celery
from devstack import PostgresServer
from devstack.sentinel import SentinelGroup
from sqlalchemy import Engine, text

from tests.ai.support import Sim
from tests.chaos.conftest import start_deployment
from tests.chaos.load import CLIENT_TIMEOUT_S, Load
from tests.conftest import alembic_config
from tests.support.processes import CeleryWorker, ManagedProcess, celery_worker

#: Data nodes' and sentinels' passwords: the test also checks neither reaches a log.
DATA_PASSWORD: Final = "data-" + secrets.token_hex(8)
SENTINEL_PASSWORD: Final = "sentinel-" + secrets.token_hex(8)


@dataclass
class SentinelSystem:
    """Handles on every process of the deployment under test."""

    ha: SentinelGroup
    postgres: PostgresServer
    sim: Sim
    api: ManagedProcess
    api_url: str
    beat: ManagedProcess
    worker: CeleryWorker
    engine: Engine
    celery: Celery
    token: str
    log_dir: Path

    def gunicorn_workers(self) -> set[int]:
        """Pids of gunicorn's worker processes (children of the master)."""
        children = Path(f"/proc/{self.api.pid}/task/{self.api.pid}/children").read_text()
        return {int(pid) for pid in children.split()}

    def job_rows(self, jobs: set[str]) -> dict[str, tuple[str, int]]:
        """job id -> (status, generation rows) for `jobs`."""
        with self.engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT j.id::text, j.status, count(g.id) FROM ai_job j "
                    "LEFT JOIN ai_generation g ON g.job_id = j.id "
                    "WHERE j.id::text = ANY(:ids) GROUP BY j.id, j.status"
                ),
                {"ids": sorted(jobs)},
            ).all()
        return {job_id: (status, n) for job_id, status, n in found}


@contextlib.contextmanager
def sentinel_system(base: Path, *, down_after_ms: int = 1000) -> Iterator[SentinelSystem]:
    """Start everything on Sentinel; stop it all afterwards."""
    (base / "prom").mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        postgres = stack.enter_context(PostgresServer(base / "pg"))
        ha = stack.enter_context(
            SentinelGroup(
                base / "redis",
                replicas=2,
                sentinels=3,
                password=DATA_PASSWORD,
                sentinel_password=SENTINEL_PASSWORD,
                down_after_ms=down_after_ms,
            )
        )
        command.upgrade(alembic_config(postgres.url), "head")
        deployment = start_deployment(
            stack, base, postgres, name="sentinel-sim",
            REDIS_URL=ha.url, REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD,
        )  # fmt: skip
        worker = stack.enter_context(
            celery_worker(
                deployment.celery, env=deployment.env, log_dir=base / "worker",
                pool="prefork", concurrency=2,
            )
        )  # fmt: skip
        yield SentinelSystem(
            ha=ha,
            postgres=postgres,
            sim=deployment.sim,
            api=deployment.api,
            api_url=deployment.api_url,
            beat=deployment.beat,
            worker=worker,
            engine=deployment.engine,
            celery=deployment.celery,
            token=deployment.token,
            log_dir=base,
        )


@dataclass
class ReadLoad(Load):
    """Client threads that only read (`GET /v1/notes`, every `PACE_S`): the listing is
    served from the response cache, so every read asks Redis even when the limiter decides
    from a lease and the denylist from the process's mirror, and the failover gap is
    sampled every few tens of milliseconds."""

    pace: float = 0.05

    def _client(self) -> None:
        auth = {"Authorization": self.token}
        with httpx.Client(base_url=self.url, timeout=CLIENT_TIMEOUT_S) as http:
            while not self._stop.is_set():
                began = time.monotonic()
                self._call(http, "list", "GET", "/v1/notes", headers=auth)
                self._stop.wait(max(0.0, self.pace - (time.monotonic() - began)))


def failover_figures(load: Load, killed: float) -> dict[str, Any]:
    """What `load` saw from monotonic time `killed` on: errors, their span, the slowest."""
    during = load.since(killed)
    errors = [o for o in during if not o.ok]
    first = min((o.started for o in errors), default=killed)
    last = max((o.started + o.elapsed for o in errors), default=killed)
    slowest = max(during, key=lambda o: o.elapsed, default=None)
    return {
        "requests": len(during),
        "errors": len(errors),
        "gap_s": round(last - first, 2),  # the failover gap: first to last failed request
        "first_error_s": round(first - killed, 2),
        "last_error_end_s": round(last - killed, 2),
        "slowest_s": round(slowest.elapsed, 2) if slowest else 0.0,
        "slowest_error_s": round(max((o.elapsed for o in errors), default=0.0), 2),
        "slowest_op": f"{slowest.op} {slowest.status}" if slowest else None,
        "codes": dict(Counter(f"{o.op} {o.status} {o.code}" for o in errors)),
    }


def failover(system: SentinelSystem, load: Load, *, settle: float) -> dict[str, Any]:
    """SIGKILL the primary under `load`, wait for a promotion, then `settle` seconds.

    Returns `failover_figures` of `load` plus when the kill happened (`killed_at`,
    monotonic) and how long the sentinels took to name a new master.
    """
    old = system.ha.primary()
    old_address = (old.host, old.port)
    killed = time.monotonic()
    old.kill()
    promoted = system.ha.wait_for_new_master(old_address)
    time.sleep(settle)
    return {
        "killed_at": killed,
        "promoted_after_s": round(promoted, 2),
        **failover_figures(load, killed),
        "new_master": system.ha.master_address(),
    }
