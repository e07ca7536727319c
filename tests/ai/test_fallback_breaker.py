"""Fallback across providers by priority, and each provider's circuit breaker."""

from __future__ import annotations

import time

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlmodel import Session

from tests.ai.support import Sim, bearer, install_provider, provider_spec

KEY_A, KEY_B = "sk-provider-a-0123456789", "sk-provider-b-0123456789"


def sample(name: str, **labels: str) -> float:
    """A sample of this process's registry (0 when absent)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
def two_providers(app: Flask, session: Session, sim: Sim, sim_b: Sim) -> tuple[Sim, Sim]:
    """`first` (priority 10) on sim, `second` (priority 20) on sim_b; no retries."""
    install_provider(
        app, session, "first", provider_spec(sim, maxRetries=0), api_key=KEY_A, refresh=False
    )
    install_provider(
        app, session, "second", provider_spec(sim_b, priority=20, maxRetries=0), api_key=KEY_B
    )
    return sim, sim_b


def ask(client: FlaskClient) -> dict:  # type: ignore[type-arg]
    response = client.post("/v1/ai/generate", json={"prompt": "hi"}, headers=bearer())
    assert response.status_code == 200, response.json
    data: dict = response.json["data"]  # type: ignore[type-arg,index]
    return data


def test_a_failing_provider_falls_back_to_the_next_one_by_priority(
    client: FlaskClient, two_providers: tuple[Sim, Sim]
) -> None:
    first, second = two_providers
    first.fault("500")
    before = sample(
        "sapi_ai_fallbacks_total", from_provider="first", to_provider="second", reason="error"
    )

    data = ask(client)

    assert data["provider"] == "second"
    assert data["attempts"] == [{"provider": "first", "reason": "server_error", "status": 500}]
    assert len(first.requests()) == 1 and len(second.requests()) == 1
    after = sample(
        "sapi_ai_fallbacks_total", from_provider="first", to_provider="second", reason="error"
    )
    assert after == before + 1


@pytest.mark.parametrize("fault", ["429", "503", "malformed", "401"])
def test_every_kind_of_failure_falls_back(
    client: FlaskClient, two_providers: tuple[Sim, Sim], fault: str
) -> None:
    first, _ = two_providers
    first.fault(fault, retry_after=60)
    assert ask(client)["provider"] == "second"


def test_the_breaker_opens_after_repeated_failures_and_closes_after_a_good_probe(
    client: FlaskClient, two_providers: tuple[Sim, Sim]
) -> None:
    first, second = two_providers
    first.fault("500", count=100)

    # AI_BREAKER_FAILURES=2 in these tests: two failures open it.
    assert ask(client)["provider"] == "second"
    assert ask(client)["provider"] == "second"
    assert sample("sapi_ai_circuit_breaker_state", provider="first") == 2
    # Open: the next call does not even reach the first provider.
    data = ask(client)
    assert data["provider"] == "second"
    assert data["attempts"] == [{"provider": "first", "reason": "breaker_open"}]
    assert len(first.requests()) == 2

    first.reset()
    time.sleep(1.1)  # AI_BREAKER_OPEN_SECONDS=1: the next call is the probe
    assert ask(client)["provider"] == "first"
    assert sample("sapi_ai_circuit_breaker_state", provider="first") == 0
    assert ask(client)["provider"] == "first"
    assert len(second.requests()) == 3


def test_a_failed_probe_opens_the_breaker_again(
    client: FlaskClient, two_providers: tuple[Sim, Sim]
) -> None:
    first, _ = two_providers
    first.fault("500", count=100)
    ask(client)
    ask(client)
    time.sleep(1.1)

    assert ask(client)["provider"] == "second"  # the probe failed
    assert len(first.requests()) == 3
    assert ask(client)["attempts"] == [{"provider": "first", "reason": "breaker_open"}]
    assert len(first.requests()) == 3


def test_when_every_breaker_is_open_the_answer_is_503_with_retry_after(
    app: Flask, session: Session, client: FlaskClient, sim: Sim
) -> None:
    install_provider(app, session, "only", provider_spec(sim, maxRetries=0), api_key=KEY_A)
    sim.fault("500", count=100)
    for _ in range(2):
        client.post("/v1/ai/generate", json={"prompt": "x"}, headers=bearer())

    response = client.post("/v1/ai/generate", json={"prompt": "x"}, headers=bearer())

    assert response.status_code == 503
    assert response.json["error"]["code"] == "AI_PROVIDER_UNAVAILABLE"
    assert response.headers["Retry-After"] == "1"
    assert len(sim.requests()) == 2


def test_a_provider_whose_key_was_never_stored_is_skipped(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, sim_b: Sim
) -> None:
    install_provider(app, session, "keyless", provider_spec(sim), refresh=False)
    install_provider(app, session, "keyed", provider_spec(sim_b, priority=20), api_key=KEY_B)

    data = ask(client)

    assert data["provider"] == "keyed"
    assert data["attempts"] == [{"provider": "keyless", "reason": "no_credential"}]
    assert sim.requests() == []


def test_a_provider_over_its_own_rpm_is_skipped_for_the_next(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, sim_b: Sim
) -> None:
    install_provider(
        app, session, "small", provider_spec(sim, limits={"rpm": 1}), api_key=KEY_A, refresh=False
    )
    install_provider(app, session, "big", provider_spec(sim_b, priority=20), api_key=KEY_B)

    assert ask(client)["provider"] == "small"
    data = ask(client)

    assert data["provider"] == "big"
    assert data["attempts"] == [{"provider": "small", "reason": "provider_limit"}]
