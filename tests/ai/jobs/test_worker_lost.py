"""A whole worker SIGKILLed mid-job: the unacked message survives in Redis and the next
worker runs the job to the end, once (acks_late; Redis visibility timeout)."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import redis

from tests.ai.jobs.conftest import JOB_ENV, Stack, wait_until, worker_env
from tests.support.processes import celery_worker

pytestmark = [pytest.mark.slow, pytest.mark.chaos, pytest.mark.timeout(600)]

VISIBILITY_TIMEOUT = int(JOB_ENV["CELERY_VISIBILITY_TIMEOUT"])
#: kombu's Redis transport keeps delivered, unacknowledged messages in this hash.
UNACKED = "unacked"


def test_a_job_whose_worker_was_killed_is_run_by_the_next_worker_and_finishes_once(
    stack: Stack, tmp_path: Path
) -> None:
    stack.sim.reset()
    stack.sim.fault("latency", seconds=120)  # the first call never returns in time
    broker = redis.Redis.from_url(stack.app.extensions["settings"].redis_url)
    env = worker_env(stack.app.extensions["settings"])

    with celery_worker(stack.celery, env=env, log_dir=tmp_path / "first", pool="solo") as first:
        job_id = stack.submit("survive this")
        wait_until(lambda: len(stack.sim.requests()) == 1, 60, "the worker to call the provider")
        delivered_at = time.monotonic()
        os.killpg(first.process.pid, signal.SIGKILL)
        wait_until(lambda: not first.process.running, 10, "the worker to die")

    # Not lost: the message waits, unacknowledged, for the visibility timeout to pass.
    assert broker.hlen(UNACKED) == 1
    assert stack.job(job_id).status == "running"
    time.sleep(max(0.0, delivered_at + VISIBILITY_TIMEOUT + 1 - time.monotonic()))

    with celery_worker(stack.celery, env=env, log_dir=tmp_path / "second", pool="solo"):
        job = stack.wait(job_id, "succeeded", timeout=120)

    assert job.deliveries == 2 and job.redeliveries == 1
    assert len(stack.sim.requests()) == 2
    assert len(stack.generations(job_id)) == 1  # the side effect happened once
    assert broker.hlen(UNACKED) == 0
