"""The whole trace, end to end on the real AI path: POST /v1/ai/jobs -> the job task in a
REAL prefork worker -> the provider call to the simulator, all one connected trace.

The producer keeps its spans in memory (the session's provider); the worker exports its
own over OTLP/HTTP to a loopback receiver. Fixtures come from the job tests
(tests/ai/jobs/conftest.py); only the settings differ: tracing on, every trace sampled.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine

from app.ai.jobs.service import RUN_JOB
from app.settings import Settings
from tests.ai.jobs.conftest import (  # noqa: F401  (fixtures used by name)
    JOB_ENV,
    JOBS_REDIS_DB,
    Stack,
    job_secret,
    job_sim,
    stack,
    with_db,
    worker_env,
)
from tests.core.observability.otlp import ExportedSpan, LoopbackServer, otlp_receiver
from tests.core.observability.test_tracing import by_name, start_worker
from tests.support.processes import ManagedProcess, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]
TRACING_ENV = {"TRACING_ENABLED": "true", "OTEL_TRACES_SAMPLER": "parentbased_always_on"}


@pytest.fixture(scope="module")
def job_settings(
    database_url: str,
    redis_url: str,
    migrated_engine: Engine,
    job_secret: str,  # noqa: F811
    session_exporter: InMemorySpanExporter,
) -> Settings:
    """The job tests' settings with tracing on; the in-memory provider exists first."""
    values: dict[str, Any] = {k.lower(): v for k, v in {**JOB_ENV, **TRACING_ENV}.items()}
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=with_db(redis_url, JOBS_REDIS_DB),
        secret_key=job_secret,
        **values,
    )


@pytest.fixture(scope="module")
def receiver() -> Iterator[LoopbackServer]:
    """The OTLP/HTTP receiver the worker exports to."""
    with otlp_receiver() as server:
        yield server


@pytest.fixture(scope="module")
def traced_worker(
    stack: Stack,  # noqa: F811
    job_settings: Settings,
    receiver: LoopbackServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ManagedProcess]:
    """A prefork worker with tracing on, exporting to `receiver`."""
    env = {
        **worker_env(job_settings),
        **TRACING_ENV,
        "OTEL_SERVICE_NAME": "structured-api-worker",
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "METRICS_PORT": "0",
    }
    log_dir = Path(tmp_path_factory.mktemp("ai-trace-worker"))
    process = start_worker(stack.celery, pool="prefork", env=env, log_dir=log_dir)
    yield process
    process.stop()


def descends_from(span: ExportedSpan, ancestor_id: str, spans: list[ExportedSpan]) -> bool:
    """True when `ancestor_id` is on the parent chain of `span`."""
    by_id = {s.span_id: s for s in spans}
    current: ExportedSpan | None = span
    while current is not None and current.parent_span_id:
        if current.parent_span_id == ancestor_id:
            return True
        current = by_id.get(current.parent_span_id)
    return False


def test_ai_job_request_worker_and_provider_call_form_one_trace(
    stack: Stack,  # noqa: F811
    traced_worker: ManagedProcess,
    receiver: LoopbackServer,
    spans: InMemorySpanExporter,
) -> None:
    stack.sim.reset()

    job_id = stack.submit("alpha beta")
    job = stack.wait(job_id, "succeeded")

    finished = spans.get_finished_spans()
    server = by_name(finished, "POST /v1/ai/jobs")
    assert server.kind is SpanKind.SERVER
    publish = next(s for s in finished if s.name == f"apply_async/{RUN_JOB}")
    assert publish.context.trace_id == server.context.trace_id
    trace_hex = f"{server.context.trace_id:032x}"
    assert job.trace_id == trace_hex

    def worker_trace() -> list[ExportedSpan]:
        return [s for s in receiver.received if s.trace_id == trace_hex]

    # The call span ends (and is exported) before the task's run span does.
    wait_for(
        lambda: {"POST", f"run/{RUN_JOB}"} <= {s.name for s in worker_trace()},
        timeout=30,
        what="the worker's run and provider-call spans",
    )
    remote = worker_trace()
    run = next(s for s in remote if s.name == f"run/{RUN_JOB}")
    assert run.parent_span_id == f"{publish.context.span_id:016x}"
    call = next(s for s in remote if s.name == "POST")
    assert descends_from(call, run.span_id, remote)
    assert {s.service for s in remote} == {"structured-api-worker"}
    assert [r["path"] for r in stack.sim.requests()] == ["/v1/chat/completions"]
