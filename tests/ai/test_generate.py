"""`POST /v1/ai/generate` against the simulator process: every wire format, sync and SSE."""

from __future__ import annotations

import hashlib
from decimal import Decimal

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.ai.models import AIGeneration
from tests.ai.support import Sim, bearer, install_provider, provider_spec, sse_events, written

KEY = "sk-sim-0123456789abcdef"
WIRE_FORMATS = ["OpenAICompatible", "OpenAI", "AzureOpenAI", "Anthropic"]


@pytest.mark.parametrize("wire", WIRE_FORMATS)
def test_generate_returns_the_providers_answer_with_usage_and_cost(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, wire: str
) -> None:
    install_provider(app, session, "primary", provider_spec(sim, type=wire), api_key=KEY)
    sim.accept_keys(KEY)

    response = client.post(
        "/v1/ai/generate",
        json={"prompt": "one two three", "max_tokens": 64},
        headers=bearer(),
    )

    assert response.status_code == 200, response.json
    data = response.json["data"]
    assert data["text"] == "echo: one two three"
    assert data["provider"] == "primary"
    assert data["model"] == "sim-small"
    # The simulator counts words: 3 in, 4 out; prices are 1.50 / 6.00 USD per 1M.
    assert data["usage"] == {
        "input_tokens": 3,
        "output_tokens": 4,
        "total_tokens": 7,
        "estimated": False,
    }
    assert Decimal(data["cost_usd"]) == (Decimal("1.50") * 3 + Decimal("6.00") * 4) / 10**6
    received = sim.requests()
    assert len(received) == 1
    assert received[0]["key_sha256"] == hashlib.sha256(KEY.encode()).hexdigest()
    assert written(app) == 1
    row = session.exec(select(AIGeneration).where(AIGeneration.id == data["id"])).one()
    assert (row.outcome, row.provider, row.input_tokens, row.output_tokens) == (
        "success", "primary", 3, 4,
    )  # fmt: skip


@pytest.mark.parametrize("wire", WIRE_FORMATS)
def test_stream_sends_start_deltas_and_done_with_usage_and_a_nonzero_cost(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, wire: str
) -> None:
    install_provider(app, session, "primary", provider_spec(sim, type=wire), api_key=KEY)

    response = client.post(
        "/v1/ai/generate",
        json={"prompt": "alpha beta gamma delta", "stream": True},
        headers=bearer(),
    )

    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    events = sse_events(response.get_data(as_text=True))
    names = [name for name, _ in events]
    assert names[0] == "start" and names[-1] == "done"
    text = "".join(data["text"] for name, data in events if name == "delta")
    assert text == "echo: alpha beta gamma delta"
    done = events[-1][1]
    assert done["usage"]["input_tokens"] == 4 and done["usage"]["output_tokens"] == 5
    assert done["usage"]["estimated"] is False
    assert Decimal(done["cost_usd"]) > 0  # a streamed call is never recorded as $0
    assert written(app) == 1
    row = session.exec(select(AIGeneration).where(AIGeneration.id == done["id"])).one()
    assert row.stream and row.outcome == "success" and row.cost_usd > 0
    assert row.ttft_ms is not None


def test_echo_provider_answers_without_any_network(
    app: Flask, session: Session, client: FlaskClient
) -> None:
    install_provider(app, session, "echo", provider_spec(None, type="Echo", models=("echo-1",)))

    response = client.post("/v1/ai/generate", json={"prompt": "hi there"}, headers=bearer())

    assert response.status_code == 200
    assert response.json["data"]["text"] == "echo: hi there"
    assert response.json["data"]["cost_usd"] != "0"


def test_without_a_model_the_first_providers_default_model_is_used(
    app: Flask, session: Session, client: FlaskClient, sim: Sim
) -> None:
    install_provider(
        app, session, "second", provider_spec(sim, models=("sim-large",), priority=20), api_key=KEY
    )
    install_provider(
        app,
        session,
        "first",
        provider_spec(sim, models=("sim-small", "sim-large"), defaultModel="sim-large"),
        api_key=KEY,
    )

    response = client.post("/v1/ai/generate", json={"prompt": "x"}, headers=bearer())

    assert response.json["data"]["model"] == "sim-large"
    assert response.json["data"]["provider"] == "first"


def test_an_unknown_model_is_404_ai_model_not_found_listing_the_models_served(
    app: Flask, session: Session, client: FlaskClient, sim: Sim
) -> None:
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)

    response = client.post(
        "/v1/ai/generate", json={"prompt": "x", "model": "gpt-nope"}, headers=bearer()
    )

    assert response.status_code == 404
    assert response.json["error"]["code"] == "AI_MODEL_NOT_FOUND"
    assert response.json["error"]["details"]["models"] == ["sim-small"]
    assert sim.requests() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "__root__"),
        ({"prompt": "a", "messages": [{"role": "user", "content": "b"}]}, "__root__"),
        ({"prompt": "a", "max_tokens": 0}, "max_tokens"),
        ({"messages": [{"role": "robot", "content": "b"}]}, "messages.0.role"),
        ({"prompt": "a", "temperature": 3}, "temperature"),
    ],
)
def test_invalid_bodies_are_422_before_any_provider_is_called(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, body: dict[str, object], field: str
) -> None:
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)

    response = client.post("/v1/ai/generate", json=body, headers=bearer())

    assert response.status_code == 422
    assert field in [e["field"] for e in response.json["error"]["errors"]]
    assert sim.requests() == []


def test_generate_needs_authentication(client: FlaskClient) -> None:
    response = client.post("/v1/ai/generate", json={"prompt": "x"})
    assert response.status_code == 401
