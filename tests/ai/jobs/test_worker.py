"""AI jobs through a REAL Celery worker (prefork): success with the request's trace, a pool
child killed mid-job, retries into the dead-letter store, replay, cancellation."""

from __future__ import annotations

import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import Result

from app.ai.dead_letters.models import DeadLetter
from tests.ai.jobs.conftest import Stack, wait_until, worker_env
from tests.support.processes import CeleryWorker, celery_worker, group_members

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def worker(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[CeleryWorker]:
    """One prefork worker (one child) for the module."""
    log_dir: Path = tmp_path_factory.mktemp("job-worker")
    with celery_worker(
        stack.celery, env=worker_env(stack.app.extensions["settings"]), log_dir=log_dir,
        pool="prefork", concurrency=1,
    ) as w:  # fmt: skip
        yield w


def pool_children(worker: CeleryWorker) -> list[int]:
    """Pids of the worker's pool processes (everything in its group but the main one)."""
    return [pid for pid in group_members(worker.process.pid) if pid != worker.process.pid]


def test_a_job_runs_on_the_worker_and_carries_the_requests_trace(
    stack: Stack, worker: CeleryWorker
) -> None:
    stack.sim.reset()
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"

    job_id = stack.submit("alpha beta", traceparent=traceparent)
    job = stack.wait(job_id, "succeeded")

    assert job.result is not None and job.result["text"] == "echo: alpha beta"
    assert job.trace_id == trace_id
    [generation] = stack.generations(job_id)
    assert generation.trace_id == trace_id  # recorded inside the worker, same trace
    response = stack.client.get(f"/v1/ai/jobs/{job_id}", headers=stack.headers())
    assert response.json["data"]["status"] == "succeeded"


def test_a_pool_child_killed_mid_job_is_redelivered_and_the_job_finishes_once(
    stack: Stack, worker: CeleryWorker
) -> None:
    stack.sim.reset()
    stack.sim.fault("latency", seconds=20)  # the first call hangs in the provider
    job_id = stack.submit("kill me softly")
    wait_until(lambda: len(stack.sim.requests()) == 1, 60, "the worker to call the provider")
    [child] = pool_children(worker)
    assert stack.job(job_id).status == "running"

    os.kill(child, signal.SIGKILL)
    job = stack.wait(job_id, "succeeded")

    assert job.deliveries == 2 and job.redeliveries == 1 and job.attempt == 1
    assert len(stack.sim.requests()) == 2  # the lost call and the redelivered one
    # The side effect (result + history row + budget settlement) happened once.
    assert len(stack.generations(job_id)) == 1
    assert job.result is not None and job.result["id"] == str(stack.generations(job_id)[0].id)
    assert worker.process.running and len(pool_children(worker)) == 1  # a new child took over


def test_a_job_failing_every_attempt_is_dead_lettered_and_replays_once_the_fault_is_gone(
    stack: Stack, worker: CeleryWorker
) -> None:
    stack.sim.reset()
    stack.sim.fault("500", count=100)
    job_id = stack.submit("doomed")

    job = stack.wait(job_id, "dead")

    assert job.attempt == 3  # JOB_MAX_RETRIES=2
    assert job.error is not None and job.error["code"] == "AI_PROVIDER_ERROR"
    assert len(stack.sim.requests()) == 3
    letters = stack.client.get(
        "/v1/admin/dead-letters?status=pending&task_name=sapi.ai.run_job", headers=stack.admin
    ).json["data"]["data"]
    [letter] = [x for x in letters if x["subject"] == f"ai_job:{job_id}"]
    assert letter["task_args"] == [job_id]
    assert letter["error_type"] == "AI_PROVIDER_ERROR"
    assert "AI_PROVIDER_ERROR" in letter["error_message"]
    assert letter["attempts"] == 3
    listed: Result = stack.app.test_cli_runner().invoke(args=["dead-letters", "list"])
    assert letter["id"] in listed.output

    stack.sim.reset()  # the fault is gone
    replay = stack.client.post(f"/v1/admin/dead-letters/{letter['id']}/replay", headers=stack.admin)
    again = stack.client.post(f"/v1/admin/dead-letters/{letter['id']}/replay", headers=stack.admin)

    assert replay.status_code == 200, replay.json
    assert again.status_code == 409
    job = stack.wait(job_id, "succeeded")
    assert job.result is not None and job.result["text"] == "echo: doomed"
    outcomes = sorted(g.outcome for g in stack.generations(job_id))
    assert outcomes == ["error", "success"]  # the dead end and the replay, nothing lost
    with stack.app.app_context():
        from app.core.db import session_scope

        with session_scope() as session:
            stored = session.get(DeadLetter, uuid.UUID(letter["id"]))
            assert stored is not None and stored.status == "replayed"


def test_cancelling_a_running_job_stops_it_after_the_current_call(
    stack: Stack, worker: CeleryWorker
) -> None:
    stack.sim.reset()
    stack.sim.fault("latency", seconds=2)
    job_id = stack.submit("slow one")
    wait_until(lambda: stack.job(job_id).status == "running", 60, "the job to start")

    response = stack.client.delete(f"/v1/ai/jobs/{job_id}", headers=stack.headers())

    assert response.status_code == 202
    assert response.json["data"]["cancel_requested"] is True
    job = stack.wait(job_id, "cancelled")
    assert job.result is not None  # the tokens were spent: the answer is kept
    assert [g.outcome for g in stack.generations(job_id)] == ["success"]
