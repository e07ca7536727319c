"""Token budgets: reserved before the call, settled after, streamed and cancelled alike."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, delete, select
from sqlmodel import Session

from app.ai.models import AIGeneration
from app.config_store.extension import config_store
from app.config_store.snapshot import build_snapshot
from app.core.crypto import keyring
from app.factory import create_app
from app.ratelimit.report import effective_limits
from app.ratelimit.stage import limiter
from app.settings import Settings
from tests.ai.support import Sim, bearer, install_provider, provider_spec, sse_events
from tests.ratelimit.conftest import install_policies, one_rule
from tests.support.processes import serve_in_thread, wait_for

KEY = "sk-budget-0123456789abcdef"
BUDGET = {"ai": one_rule({"tokens": 1000, "window": "1d"}, match={"paths": ["/v1/ai/*"]})}


def tokens_left(app: Flask, subject: str) -> int:
    from app.auth.caller import Caller

    caller = Caller(kind="user", subject=subject, roles=frozenset({"user"}))
    report = effective_limits(limiter(app), caller=caller, ip="127.0.0.1", headers={})
    for entry in report.rules:
        for budget in entry.budgets:
            if budget.limit.unit == "tokens" and budget.remaining is not None:
                return budget.remaining
    raise AssertionError("no token budget")


@pytest.fixture
def budgeted(app: Flask, session: Session, sim: Sim) -> Sim:
    """One provider and a 1000-token daily budget per user on /v1/ai/*."""
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)
    install_policies(app, BUDGET)
    return sim


def test_a_call_is_charged_its_real_usage_not_the_reservation(
    app: Flask, client: FlaskClient, budgeted: Sim
) -> None:
    user = str(uuid.uuid4())

    response = client.post(
        "/v1/ai/generate", json={"prompt": "one two three", "max_tokens": 500},
        headers=bearer(user),
    )  # fmt: skip

    assert response.status_code == 200
    assert response.json["data"]["usage"]["total_tokens"] == 7
    assert tokens_left(app, user) == 1000 - 7  # 500+ reserved, 7 charged


def test_a_streamed_call_is_charged_like_any_other(
    app: Flask, client: FlaskClient, budgeted: Sim
) -> None:
    user = str(uuid.uuid4())

    response = client.post(
        "/v1/ai/generate", json={"prompt": "one two three", "stream": True}, headers=bearer(user)
    )
    sse_events(response.get_data(as_text=True))

    assert tokens_left(app, user) == 1000 - 7


def test_an_exhausted_budget_is_429_ai_token_limit_before_any_provider_call(
    app: Flask, client: FlaskClient, budgeted: Sim
) -> None:
    user = str(uuid.uuid4())
    first = client.post(
        "/v1/ai/generate", json={"prompt": "a", "max_tokens": 900}, headers=bearer(user)
    )
    assert first.status_code == 200
    calls = len(budgeted.requests())

    # Left: 1000 - 3; this one reserves 1 + 4 (framing) + 995.
    refused = client.post(
        "/v1/ai/generate", json={"prompt": "b", "max_tokens": 995}, headers=bearer(user)
    )

    assert refused.status_code == 429
    assert refused.json["error"]["code"] == "AI_TOKEN_LIMIT"
    assert int(refused.headers["Retry-After"]) >= 1
    assert len(budgeted.requests()) == calls
    # A failed provider call gives its reservation back in full.
    budgeted.fault("500", count=10)
    failed = client.post("/v1/ai/generate", json={"prompt": "c"}, headers=bearer(user))
    assert failed.status_code == 502
    assert tokens_left(app, user) == 1000 - 3


def test_a_request_larger_than_the_whole_budget_says_it_never_fits(
    client: FlaskClient, budgeted: Sim
) -> None:
    response = client.post(
        "/v1/ai/generate", json={"prompt": "a", "max_tokens": 5000}, headers=bearer()
    )
    assert response.status_code == 429
    assert response.json["error"]["details"]["never_fits"] is True


def test_a_budget_written_for_v2_charges_v2_calls_and_leaves_v1_alone(
    app: Flask, client: FlaskClient, session: Session, sim: Sim
) -> None:
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)
    install_policies(
        app, {"ai": one_rule({"tokens": 1000, "window": "1d"}, match={"paths": ["/v2/ai/*"]})}
    )
    user = str(uuid.uuid4())

    v1 = client.post("/v1/ai/generate", json={"prompt": "one two three"}, headers=bearer(user))
    assert v1.status_code == 200
    assert tokens_left(app, user) == 1000  # the /v1 call matched no rule
    v2 = client.post("/v2/ai/generate", json={"prompt": "one two three"}, headers=bearer(user))
    assert v2.status_code == 200
    assert tokens_left(app, user) == 1000 - 7
    refused = client.post(
        "/v2/ai/generate", json={"prompt": "a", "max_tokens": 5000}, headers=bearer(user)
    )
    assert refused.status_code == 429 and refused.json["error"]["code"] == "AI_TOKEN_LIMIT"


# -- a stream cancelled half way, over a real socket ----------------------------------


@pytest.fixture
def live_app(
    settings: Settings, migrated_engine: Engine, slow_sim: Sim
) -> Iterator[tuple[Flask, str]]:
    """An app on its own engine (committed rows) with the slow simulator as its provider.

    The provider is installed as a snapshot of this process only (no config row), so
    nothing leaks into the shared database's config tables.
    """
    app = create_app(settings)
    ring = keyring(settings)
    row: dict[str, Any] = {
        "kind": "AIProvider",
        "name": "slow",
        "spec": provider_spec(slow_sim, maxRetries=0),
        "source": "admin",
        "generation": 1,
        "credential_ciphertext": ring.encrypt(KEY),
        "credential_version": ring.version(KEY),
    }
    config_store(app).install(build_snapshot(10**9, [row]))
    install_policies(app, BUDGET)
    owner = str(uuid.uuid4())
    yield app, owner
    with migrated_engine.begin() as conn:
        conn.execute(delete(AIGeneration).where(AIGeneration.user_id == owner))  # type: ignore[arg-type]
    config_store(app).stop()
    app.extensions["db"].dispose()


def test_a_stream_cancelled_half_way_is_charged_for_what_was_delivered(
    live_app: tuple[Flask, str], migrated_engine: Engine
) -> None:
    app, user = live_app
    prompt = " ".join(f"w{i}" for i in range(40))  # the answer is 41 words, 50 ms apart
    with app.app_context():
        headers = bearer(user)
    with serve_in_thread(app) as server, httpx.Client(timeout=10) as http:
        with http.stream(
            "POST",
            f"{server.url}/v1/ai/generate",
            json={"prompt": prompt, "stream": True, "max_tokens": 100},
            headers=headers,
        ) as response:
            assert response.status_code == 200
            deltas = 0
            for line in response.iter_lines():
                if line == "event: delta":
                    deltas += 1
                if deltas == 5:
                    break
        # Leaving the block closed the socket mid-stream.
        started = time.monotonic()

        def recorded() -> AIGeneration | None:
            with Session(migrated_engine) as s:
                return s.exec(  # type: ignore[call-overload,no-any-return]
                    select(AIGeneration).where(AIGeneration.user_id == user)  # type: ignore[arg-type]
                ).scalar_one_or_none()

        wait_for(lambda: recorded() is not None, timeout=10, what="the history record")
    row = recorded()
    assert row is not None
    assert row.outcome == "cancelled" and row.stream and row.tokens_estimated
    # 5 chunks read; the server may have sent one or two more before it saw the close.
    assert 5 <= row.output_tokens <= 8, row.output_tokens
    assert row.latency_ms < 41 * 50  # the upstream was closed, not read to the end
    assert time.monotonic() - started < 5
    with app.app_context():
        left = tokens_left(app, user)
    assert left == 1000 - (row.input_tokens + row.output_tokens)
