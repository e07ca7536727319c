"""Each simulator fault, and what the gateway makes of it (retry, error code, estimate)."""

from __future__ import annotations

import time

import pytest
from flask import Flask, current_app
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.ai.models import AIGeneration
from tests.ai.support import Sim, bearer, install_provider, provider_spec, sse_events, written

KEY = "sk-fault-0123456789abcdef"


@pytest.fixture
def primary(app: Flask, session: Session, sim: Sim) -> Sim:
    """One OpenAI-compatible provider on the simulator, 1 retry, 2 s timeout."""
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)
    return sim


def generate(client: FlaskClient, **body: object) -> tuple[int, dict, float]:  # type: ignore[type-arg]
    started = time.monotonic()
    response = client.post("/v1/ai/generate", json={"prompt": "a b", **body}, headers=bearer())
    return response.status_code, response.json or {}, time.monotonic() - started


@pytest.mark.parametrize("kind", ["500", "503"])
def test_a_server_error_is_retried_and_the_retry_answers(
    client: FlaskClient, primary: Sim, kind: str
) -> None:
    primary.fault(kind)

    status, body, _ = generate(client)

    assert status == 200
    assert len(primary.requests()) == 2
    assert body["data"]["attempts"] == [
        {"provider": "primary", "reason": "server_error", "status": int(kind)}
    ]
    assert "AI_PROVIDER_FALLBACK" in [w["code"] for w in body["warnings"]]


def test_a_429_is_retried_after_its_retry_after_and_succeeds(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("429", retry_after=1)

    status, body, took = generate(client)

    assert status == 200, body
    assert took >= 1.0  # Retry-After honoured, not a hot loop
    assert len(primary.requests()) == 2
    assert body["data"]["attempts"][0]["reason"] == "rate_limited"


def test_a_retry_after_longer_than_the_wait_cap_is_not_slept_but_returned(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("429", retry_after=30)  # AI_RETRY_MAX_WAIT is 2 s in these tests

    started = time.monotonic()
    response = client.post("/v1/ai/generate", json={"prompt": "x"}, headers=bearer())

    assert time.monotonic() - started < 1.5
    assert response.status_code == 503
    assert response.json["error"]["code"] == "AI_PROVIDER_UNAVAILABLE"
    assert response.headers["Retry-After"] == "30"
    assert len(primary.requests()) == 1


def test_persistent_server_errors_end_in_502_after_one_retry(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("500", count=10)

    status, body, _ = generate(client)

    assert status == 502
    assert body["error"]["code"] == "AI_PROVIDER_ERROR"
    assert [a["reason"] for a in body["error"]["details"]["attempts"]] == ["server_error"] * 2
    assert len(primary.requests()) == 2


def test_a_malformed_body_is_502_and_not_retried(client: FlaskClient, primary: Sim) -> None:
    primary.fault("malformed")

    status, body, _ = generate(client)

    assert status == 502
    assert body["error"]["code"] == "AI_PROVIDER_ERROR"
    assert body["error"]["details"]["attempts"] == [
        {"provider": "primary", "reason": "bad_response"}
    ]
    assert len(primary.requests()) == 1


def test_a_hanging_provider_times_out_with_504_within_its_timeout(
    app: Flask, session: Session, client: FlaskClient, sim: Sim
) -> None:
    spec = provider_spec(sim, timeoutSeconds=0.5, maxRetries=0)
    install_provider(app, session, "primary", spec, api_key=KEY)
    sim.fault("hang", seconds=5)

    status, body, took = generate(client)

    assert status == 504
    assert body["error"]["code"] == "AI_PROVIDER_TIMEOUT"
    assert 0.4 < took < 2.0


def test_a_slow_provider_within_its_timeout_just_answers_later(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("latency", seconds=0.3)

    status, body, _ = generate(client)

    assert status == 200
    assert body["data"]["latency_ms"] >= 300
    assert body["data"]["attempts"] == []


def test_a_rejected_key_is_502_not_retried_and_never_echoed(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("401")

    response = client.post("/v1/ai/generate", json={"prompt": "x"}, headers=bearer())

    assert response.status_code == 502  # our client's credentials were fine: not a 401
    assert response.json["error"]["details"]["attempts"] == [
        {"provider": "primary", "reason": "auth", "status": 401}
    ]
    assert KEY not in response.get_data(as_text=True)
    assert len(primary.requests()) == 1


def test_missing_usage_is_estimated_marked_and_warned(
    session: Session, client: FlaskClient, primary: Sim
) -> None:
    primary.fault("no_usage")

    status, body, _ = generate(client, prompt="a fairly long prompt with several words")

    assert status == 200
    usage = body["data"]["usage"]
    assert usage["estimated"] is True and usage["input_tokens"] > 0 and usage["output_tokens"] > 0
    assert "AI_USAGE_ESTIMATED" in [w["code"] for w in body["warnings"]]
    written(current_app)
    row = session.exec(select(AIGeneration).where(AIGeneration.id == body["data"]["id"])).one()
    assert row.tokens_estimated


def test_a_stream_without_usage_is_charged_an_estimate_not_zero(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("no_usage")

    response = client.post(
        "/v1/ai/generate", json={"prompt": "p q r", "stream": True}, headers=bearer()
    )

    done = sse_events(response.get_data(as_text=True))[-1]
    assert done[0] == "done"
    assert done[1]["usage"]["estimated"] is True
    assert done[1]["usage"]["output_tokens"] >= 4  # at least one token per delivered chunk
    assert done[1]["cost_usd"] != "0"


def test_a_truncated_stream_ends_with_an_error_event_and_an_error_record(
    session: Session, client: FlaskClient, primary: Sim
) -> None:
    primary.fault("truncated")

    response = client.post(
        "/v1/ai/generate",
        json={"prompt": "one two three four five six", "stream": True},
        headers=bearer(),
    )

    events = sse_events(response.get_data(as_text=True))
    assert events[0][0] == "start"
    deltas = [d["text"] for name, d in events if name == "delta"]
    assert 0 < len(deltas) < 7
    assert events[-1][0] == "error"
    assert events[-1][1]["code"] == "AI_PROVIDER_ERROR"
    assert events[-1][1]["reason"] == "truncated"
    written(current_app)
    row = session.exec(select(AIGeneration).where(AIGeneration.stream)).one()
    assert row.outcome == "error" and row.tokens_estimated
    # Charged for what was delivered: at least a token per chunk, ~4 characters a token.
    assert row.output_tokens == max(len(deltas), -(-len("".join(deltas)) // 4))


def test_a_stream_that_fails_before_its_first_event_is_retried_before_anything_is_sent(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("503")

    response = client.post(
        "/v1/ai/generate", json={"prompt": "x y", "stream": True}, headers=bearer()
    )

    events = sse_events(response.get_data(as_text=True))
    assert [n for n, _ in events][-1] == "done"
    assert events[0][1]["attempts"] == [
        {"provider": "primary", "reason": "server_error", "status": 503}
    ]


def test_a_stream_that_cannot_start_is_a_plain_json_error(
    client: FlaskClient, primary: Sim
) -> None:
    primary.fault("500", count=5)

    response = client.post(
        "/v1/ai/generate", json={"prompt": "x", "stream": True}, headers=bearer()
    )

    assert response.status_code == 502
    assert response.mimetype == "application/json"
    assert response.json["error"]["code"] == "AI_PROVIDER_ERROR"
