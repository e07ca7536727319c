"""Traces: Flask, SQLAlchemy, Redis and httpx spans in-process; request -> Celery task ->
provider call connected across a REAL worker process that exports over OTLP/HTTP."""

from __future__ import annotations

import io
import json
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest
from celery import Celery
from flask import Flask
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, ParentBased
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, text

from app.core import redis as redis_ext
from app.core.db import session_scope
from app.core.observability import tracing
from app.core.observability.logging import JsonFormatter, RequestContextFilter
from app.core.request_context import REQUEST_ID_HEADER
from app.factory import create_app
from app.settings import Settings
from tests.core.observability.otlp import ExportedSpan, LoopbackServer, fake_provider, otlp_receiver
from tests.core.observability.trace_tasks import TASK_NAME
from tests.support.processes import ManagedProcess, child_env, wait_for

ROOT = Path(__file__).resolve().parents[3]
# Its own Redis database: the per-test `app` fixture flushes the default one.
TRACE_REDIS_DB = 8


def with_db(url: str, db: int) -> str:
    """`url` pointing at Redis database `db`."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{db}"))


@pytest.fixture
def traced_settings(settings: Settings) -> Settings:
    """The test settings with tracing on (sampling everything) and the in-app /metrics."""
    return settings.model_copy(
        update={
            "tracing_enabled": True,
            "otel_traces_sampler": "parentbased_always_on",
            "metrics_on_api_port": True,
        }
    )


@pytest.fixture
def traced_app(
    traced_settings: Settings, spans: InMemorySpanExporter, migrated_engine: Engine
) -> Iterator[Flask]:
    """An app with its own engine (not the per-test transaction) and tracing on."""
    application = create_app(traced_settings)
    yield application
    application.extensions["db"].dispose()


def by_name(finished: tuple[ReadableSpan, ...], name: str) -> ReadableSpan:
    """The one finished span called `name`."""
    matches = [s for s in finished if s.name == name]
    assert len(matches) == 1, [s.name for s in finished]
    return matches[0]


def test_request_spans_cover_flask_sqlalchemy_redis_and_httpx(
    traced_app: Flask, spans: InMemorySpanExporter
) -> None:
    with fake_provider() as provider:

        @traced_app.get("/obs-test/touch/<int:item_id>")
        def _touch(item_id: int) -> dict[str, int]:
            with session_scope() as session:
                session.execute(text("SELECT 1"))
            redis_ext.client().ping()
            httpx.post(provider.url + "/v1/chat/completions", json={}, timeout=5)
            return {"item": item_id}

        assert traced_app.test_client().get("/obs-test/touch/42").status_code == 200

    finished = spans.get_finished_spans()
    server = by_name(finished, "GET /obs-test/touch/<int:item_id>")
    assert server.kind is SpanKind.SERVER
    children = [s for s in finished if s.parent and s.parent.span_id == server.context.span_id]
    # Statement spans are named "<operation> <database>" (OTel database semconv).
    kinds = {s.name.split()[0]: s.kind for s in children}
    assert kinds == {"SELECT": SpanKind.CLIENT, "PING": SpanKind.CLIENT, "POST": SpanKind.CLIENT}
    assert {s.context.trace_id for s in children} == {server.context.trace_id}
    # W3C trace context reached the provider (www.w3.org/TR/trace-context).
    assert f"{server.context.trace_id:032x}" in provider.received[0]["traceparent"]


def test_probe_and_scrape_requests_make_no_spans(
    traced_app: Flask, spans: InMemorySpanExporter
) -> None:
    client = traced_app.test_client()
    for path in ("/livez", "/metrics"):
        assert client.get(path).status_code == 200

    assert [s.name for s in spans.get_finished_spans()] == []


def test_json_log_lines_carry_trace_and_request_ids(
    traced_app: Flask, spans: InMemorySpanExporter
) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("structured_api.access")
    access.addHandler(handler)
    try:
        response = traced_app.test_client().get(
            "/v1/notes", headers={REQUEST_ID_HEADER: "req-0123456789"}
        )
    finally:
        access.removeHandler(handler)

    assert response.headers[REQUEST_ID_HEADER] == "req-0123456789"
    line = json.loads(out.getvalue().splitlines()[-1])
    server = by_name(spans.get_finished_spans(), "GET /v1/notes")
    assert line["request_id"] == "req-0123456789"
    assert line["trace_id"] == f"{server.context.trace_id:032x}"
    assert line["span_id"] == f"{server.context.span_id:016x}"


def test_log_lines_outside_a_span_carry_no_trace_id() -> None:
    record = logging.makeLogRecord({"msg": "no span here"})

    RequestContextFilter().filter(record)

    assert json.loads(JsonFormatter().format(record)).get("trace_id") is None


def test_tracing_disabled_instruments_nothing(settings: Settings) -> None:
    plain = create_app(settings)
    assert plain.extensions["observability"]["tracing"] is False
    assert not getattr(plain, "_is_instrumented_by_opentelemetry", False)
    plain.extensions["db"].dispose()


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("always_on", ALWAYS_ON),
        ("always_off", ALWAYS_OFF),
        ("parentbased_always_on", ParentBased(ALWAYS_ON)),
    ],
)
def test_sampler_is_chosen_by_its_otel_name(name: str, expected: object) -> None:
    assert tracing.build_sampler(name, 0.5).get_description() == expected.get_description()  # type: ignore[attr-defined]


def test_default_sampler_is_parent_based_ratio_from_settings() -> None:
    settings = Settings(app_env="test")
    sampler = tracing.build_sampler(settings.otel_traces_sampler, settings.otel_traces_sampler_arg)

    assert sampler.get_description().startswith("ParentBased{root:TraceIdRatioBased{0.1}")


def test_unknown_sampler_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown OTEL_TRACES_SAMPLER"):
        tracing.build_sampler("sometimes", 0.5)


# --- one trace across the API, a real Celery worker and the provider ----------------------


def start_worker(
    producer: Celery, *, pool: str, env: dict[str, str], log_dir: Path
) -> ManagedProcess:
    """`celery worker` with the trace task included, waited for until it answers a ping."""
    nodename = f"trace-{pool}-{os.getpid()}-{time.monotonic_ns()}@{socket.gethostname()}"
    process = ManagedProcess(
        name=f"celery worker ({pool})",
        args=[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "app.worker:celery_app",
            "worker",
            f"--pool={pool}",
            "--concurrency=1",
            f"--hostname={nodename}",
            "--include=tests.core.observability.trace_tasks",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--loglevel=INFO",
        ],
        env=env,
        log_path=log_dir / f"worker-{pool}.log",
        cwd=ROOT,
        stop_timeout=20.0,
    ).start()

    def answers() -> bool:
        process.check_alive()
        return any(nodename in r for r in producer.control.ping([nodename], timeout=0.25))

    try:
        wait_for(answers, timeout=90, interval=0.2, what=process.name)
    except BaseException:
        process.stop()
        raise
    return process


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("pool", ["solo", "prefork"])
def test_request_task_and_provider_call_form_one_trace(
    pool: str,
    traced_settings: Settings,
    spans: InMemorySpanExporter,
    tmp_path: Path,
) -> None:
    settings = traced_settings.model_copy(
        update={"redis_url": with_db(traced_settings.redis_url, TRACE_REDIS_DB)}
    )
    api = create_app(settings)
    producer: Celery = api.extensions["celery"]
    with otlp_receiver() as receiver, fake_provider() as provider:
        env = child_env(
            APP_ENV="test",
            DATABASE_URL=settings.database_url,
            REDIS_URL=settings.redis_url,
            TRACING_ENABLED="true",
            OTEL_SERVICE_NAME="structured-api-worker",
            OTEL_TRACES_SAMPLER="parentbased_always_on",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_BSP_SCHEDULE_DELAY="100",
            METRICS_PORT="0",
        )
        for inherited in ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "PROMETHEUS_MULTIPROC_DIR"):
            env.pop(inherited, None)
        worker = start_worker(producer, pool=pool, env=env, log_dir=tmp_path)
        try:
            trace_hex, task_id = enqueue_through_api(api, producer, provider)
            assert producer.AsyncResult(task_id).get(timeout=60) == 200
            wait_for(
                lambda: (
                    {f"run/{TASK_NAME}", "POST"}
                    <= {s.name for s in worker_spans(receiver, trace_hex)}
                ),
                timeout=30,
                what="the worker's spans over OTLP",
            )
        finally:
            worker.stop()
    api.extensions["db"].dispose()

    finished = spans.get_finished_spans()
    server = by_name(finished, "POST /obs-test/jobs")
    publish = by_name(finished, f"apply_async/{TASK_NAME}")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and publish.parent.span_id == server.context.span_id

    remote = {s.name: s for s in worker_spans(receiver, trace_hex)}
    run = remote[f"run/{TASK_NAME}"]
    call = remote["POST"]
    assert run.service == call.service == "structured-api-worker"
    assert run.parent_span_id == f"{publish.context.span_id:016x}"
    assert call.parent_span_id == run.span_id
    assert provider.received[0]["traceparent"].split("-")[1] == trace_hex


def enqueue_through_api(api: Flask, producer: Celery, provider: LoopbackServer) -> tuple[str, str]:
    """POST to a route that enqueues the provider-calling task; return (trace id, task id)."""

    @api.post("/obs-test/jobs")
    def _enqueue() -> tuple[dict[str, str], int]:
        result = producer.send_task(TASK_NAME, args=[provider.url + "/v1/chat/completions"])
        return {"task_id": result.id}, 202

    response = api.test_client().post("/obs-test/jobs")
    assert response.status_code == 202
    traceparent_trace = next(
        f"{s.context.trace_id:032x}" for s in producer_spans() if s.name == "POST /obs-test/jobs"
    )
    return traceparent_trace, response.get_json()["task_id"]


def producer_spans() -> tuple[ReadableSpan, ...]:
    """Spans this process finished so far (the session's in-memory exporter)."""
    from tests.core.observability.conftest import _EXPORTER

    return _EXPORTER.get_finished_spans()


def worker_spans(receiver: LoopbackServer, trace_hex: str) -> list[ExportedSpan]:
    """Spans the worker exported for one trace."""
    return [s for s in receiver.received if s.trace_id == trace_hex]
