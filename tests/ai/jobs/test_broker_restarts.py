"""Redis (the broker) stops while a worker holds a late-ack job, twenty times in a row: the
worker process stays up (same pid, never restarted) and every job finishes exactly once.

Before app/core/tasks/broker.py the first such stop ended the worker for good ("Unrecoverable
error: AttributeError: 'NoneType' object has no attribute 'hostname'", kombu 5.7.0's
`Channel._connparams` after the consumer had closed its connection; the module's docstring
has the whole chain). It takes a worker that is still asking for work (BRPOP in flight)
while a pool process holds the late-ack job: two pool processes here, as in production,
where a worker runs one per CPU. With one process and a prefetch of one, the consumer
does not ask for more while the job runs, and the bug never shows.

Redis here keeps its data across the restart (append-only file, as a production broker
should), so the unacknowledged message is still there to acknowledge or deliver again; odd
rounds stop it gracefully, even rounds SIGKILL it, and it stays down for a second each time
so the worker sees the outage (a faster restart is over before the consumer notices).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import redis
from devstack import RedisServer
from sqlalchemy import Engine

from app.settings import Settings
from tests.ai.jobs.conftest import JOB_ENV, Stack, wait_until, worker_env
from tests.support.processes import celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(600)]

ROUNDS = 20
#: The provider holds each call this long, so Redis goes away and comes back mid-job.
HOLD_S = 3.0
#: Redis stays down this long, so the worker's consumer sees the outage.
DOWN_S = 1.0
#: Pool processes: one holds the job, the consumer keeps asking for work for the other.
CONCURRENCY = 2
#: kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED = "unacked"


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis of this module's own (it is stopped twenty times), with an append-only file."""
    with RedisServer(tmp_path_factory.mktemp("broker-redis"), persistent=True) as server:
        yield server


@pytest.fixture(scope="module")
def job_settings(
    database_url: str, migrated_engine: Engine, job_secret: str, broker: RedisServer
) -> Settings:
    """The job stack's settings (tests/ai/jobs/conftest.py) on this module's Redis."""
    values: dict[str, Any] = {k.lower(): v for k, v in JOB_ENV.items()}
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=broker.url,
        secret_key=job_secret,
        **values,
    )


def submit(stack: Stack, prompt: str) -> str:
    """Submit a job once the producer's Redis answers again (a 503 says it does not yet)."""
    deadline = time.monotonic() + 30
    while True:
        response = stack.client.post(
            "/v1/ai/jobs", json={"prompt": prompt, "model": stack.model}, headers=stack.headers()
        )
        if response.status_code != 503 or time.monotonic() > deadline:
            assert response.status_code == 202, response.json
            job_id: str = response.json["data"]["id"]
            return job_id
        time.sleep(0.2)


def test_the_worker_survives_twenty_broker_restarts_while_holding_late_ack_jobs(
    stack: Stack, broker: RedisServer, tmp_path: Path
) -> None:
    client = redis.Redis.from_url(broker.url, socket_timeout=2)
    env = worker_env(stack.app.extensions["settings"])
    jobs: list[str] = []
    outages: list[float] = []
    with celery_worker(
        stack.celery, env=env, log_dir=tmp_path, pool="prefork", concurrency=CONCURRENCY
    ) as worker:

        def finished(job_id: str) -> bool:
            worker.process.check_alive()  # a dead worker fails here, with its log
            return stack.job(job_id).status == "succeeded"

        def reached_the_provider() -> bool:
            worker.process.check_alive()
            return len(stack.sim.requests()) == 1

        for n in range(ROUNDS):
            stack.sim.reset()
            stack.sim.fault("latency", seconds=HOLD_S)
            job_id = submit(stack, f"round {n}")
            jobs.append(job_id)
            wait_until(reached_the_provider, 30, "the job to reach the provider")
            assert client.hlen(UNACKED) == 1  # held: delivered, not acknowledged
            began = time.monotonic()
            if n % 2:
                broker.stop()
            else:
                broker.kill()
            time.sleep(DOWN_S)
            broker.start()
            outages.append(time.monotonic() - began)
            wait_until(partial(finished, job_id), 60, f"job {n} to succeed")
        # Nothing stranded: every message was acknowledged (none waits for redelivery).
        wait_until(lambda: client.hlen(UNACKED) == 0, 30, "the last acknowledgement")
        log = worker.process.output()
    assert "Unrecoverable error" not in log, worker.process.tail(80)
    assert "AttributeError" not in log, worker.process.tail(80)
    for job_id in jobs:
        job = stack.job(job_id)
        assert job.status == "succeeded"
        # Delivered again at most once (kombu restores the message when Redis answers
        # during the reconnect), and the claim makes that delivery record nothing twice.
        assert job.redeliveries <= 1, (job_id, job.deliveries, job.redeliveries)
        assert len(stack.generations(job_id)) == 1
    print(  # noqa: T201 - visible with -s
        f"\n{ROUNDS} broker restarts, Redis down {min(outages):.2f}-{max(outages):.2f} s each; "
        f"redeliveries {[stack.job(j).redeliveries for j in jobs]}"
    )
