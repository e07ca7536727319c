"""GenAI spans: one CLIENT span per provider attempt with OpenTelemetry's `gen_ai.*`
attributes, for JSON and streamed answers of the OpenAI-compatible surface."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from flask import Flask
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy import Engine, text
from sqlmodel import Session

from app.ai.history import queue as history_queue
from app.config_store.extension import config_store
from app.config_store.service import Source, upsert_config
from app.factory import create_app
from app.settings import Settings
from tests.ai.support import bearer


@pytest.fixture
def echo_app(
    settings: Settings, spans: InMemorySpanExporter, migrated_engine: Engine
) -> Iterator[tuple[Flask, str]]:
    """A traced app with its own engine and an Echo provider serving a fresh model name."""
    traced = settings.model_copy(
        update={"tracing_enabled": True, "otel_traces_sampler": "parentbased_always_on"}
    )
    name, model = f"echo-{uuid.uuid4().hex[:8]}", f"m-{uuid.uuid4().hex[:8]}"
    with Session(migrated_engine) as session:
        upsert_config(
            session=session, kind="AIProvider", name=name, source=Source.admin(), actor="test",
            spec={"type": "Echo", "models": [{"name": model, "inputCostPer1M": "1",
                                              "outputCostPer1M": "2"}]},
        )  # fmt: skip
        session.commit()
    application = create_app(traced)
    try:
        with migrated_engine.connect() as connection:
            config_store(application).refresh(connection)
        yield application, model
    finally:
        history_queue.journal(application).drain()  # write the queued rows, then drop them
        with migrated_engine.begin() as connection:
            connection.execute(text("DELETE FROM config_object WHERE name = :n"), {"n": name})
            connection.execute(text("DELETE FROM ai_generation WHERE model = :m"), {"m": model})
        application.extensions["db"].dispose()


def test_chat_attempts_make_gen_ai_client_spans(
    echo_app: tuple[Flask, str], spans: InMemorySpanExporter
) -> None:
    app, model = echo_app
    client = app.test_client()
    with app.app_context():
        headers = bearer()
    body = {"model": model, "messages": [{"role": "user", "content": "trace me"}],
            "temperature": 0.3, "max_tokens": 20}  # fmt: skip

    answer = client.post("/openai/v1/chat/completions", json=body, headers=headers)
    streamed = client.post(
        "/openai/v1/chat/completions", json={**body, "stream": True}, headers=headers
    )
    assert answer.status_code == 200, answer.get_json()
    assert streamed.status_code == 200 and b"[DONE]" in streamed.get_data()

    chat = [s for s in spans.get_finished_spans() if s.name == f"chat {model}"]
    assert len(chat) == 2
    for span in chat:
        attributes = dict(span.attributes or {})
        assert span.kind is SpanKind.CLIENT
        assert attributes["gen_ai.operation.name"] == "chat"
        assert attributes["gen_ai.provider.name"] == "structured_api.echo"
        assert attributes["gen_ai.request.model"] == model
        assert attributes["gen_ai.request.temperature"] == 0.3
        assert attributes["gen_ai.request.max_tokens"] == 20
        assert int(attributes["gen_ai.usage.input_tokens"]) > 0  # type: ignore[arg-type]
        assert int(attributes["gen_ai.usage.output_tokens"]) > 0  # type: ignore[arg-type]
        assert "trace me" not in str(attributes)  # content is never recorded
