"""`/v1/ai/jobs` in process: 202 + Location, Idempotency-Key semantics, reads, cancellation."""

from __future__ import annotations

import uuid

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session, func, select

from app.ai.jobs.models import AIJob
from tests.ai.support import Sim, bearer, install_provider, provider_spec
from tests.ratelimit.conftest import install_policies, one_rule

KEY = "sk-submit-0123456789abcdef"
BODY = {"prompt": "write a haiku", "max_tokens": 50}


@pytest.fixture
def sim(job_sim: Sim) -> Sim:
    """The module's simulator, reset."""
    job_sim.reset()
    return job_sim


@pytest.fixture
def provider(app: Flask, session: Session, sim: Sim) -> Sim:
    """One provider (never called here: no worker runs in these tests)."""
    install_provider(app, session, "primary", provider_spec(sim), api_key=KEY)
    return sim


def submit(
    client: FlaskClient, user: str, body: dict[str, object] = BODY, key: str | None = None
) -> tuple[int, dict, dict[str, str]]:  # type: ignore[type-arg]
    headers = bearer(user)
    if key is not None:
        headers["Idempotency-Key"] = key
    response = client.post("/v1/ai/jobs", json=body, headers=headers)
    return response.status_code, response.json or {}, dict(response.headers)


def jobs_of(session: Session, user: str) -> int:
    return int(
        session.exec(select(func.count()).where(AIJob.owner == f"user:{user}")).one()  # type: ignore[call-overload]
    )


def test_submitting_a_job_is_202_with_a_location_to_poll(
    client: FlaskClient, provider: Sim, redis_url: str
) -> None:
    user = str(uuid.uuid4())

    status, body, headers = submit(client, user)

    assert status == 202
    job = body["data"]
    assert job["status"] == "queued"
    assert headers["Location"] == f"/v1/ai/jobs/{job['id']}"
    polled = client.get(headers["Location"], headers=bearer(user))
    assert polled.status_code == 200 and polled.json["data"]["id"] == job["id"]
    # The message is on the broker (Celery's default queue), nothing ran it.
    assert redis.Redis.from_url(redis_url).llen("celery") == 1
    assert provider.requests() == []


def test_the_same_idempotency_key_and_body_return_the_same_job(
    session: Session, client: FlaskClient, provider: Sim
) -> None:
    user = str(uuid.uuid4())

    first = submit(client, user, key="order-42")
    # Same body with its keys in another order is the same body.
    second = submit(client, user, {"max_tokens": 50, "prompt": "write a haiku"}, key="order-42")

    assert first[0] == second[0] == 202
    assert first[1]["data"]["id"] == second[1]["data"]["id"]
    assert second[2]["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first[2]
    assert jobs_of(session, user) == 1


def test_the_same_idempotency_key_with_another_body_is_422(
    session: Session, client: FlaskClient, provider: Sim
) -> None:
    user = str(uuid.uuid4())
    submit(client, user, key="order-43")

    status, body, _ = submit(client, user, {"prompt": "something else"}, key="order-43")

    assert status == 422
    assert body["error"]["code"] == "VAL_IDEMPOTENCY_KEY_REUSED"
    assert jobs_of(session, user) == 1


def test_idempotency_keys_belong_to_their_caller(
    session: Session, client: FlaskClient, provider: Sim
) -> None:
    alice, bob = str(uuid.uuid4()), str(uuid.uuid4())

    a = submit(client, alice, key="shared-key")
    b = submit(client, bob, key="shared-key")

    assert a[1]["data"]["id"] != b[1]["data"]["id"]


@pytest.mark.parametrize("key", ["", "x" * 256, "with space", "caf\u00e9"])
def test_a_malformed_idempotency_key_is_422(client: FlaskClient, provider: Sim, key: str) -> None:
    headers = {**bearer(), "Idempotency-Key": key}
    response = client.post("/v1/ai/jobs", json=BODY, headers=headers)
    assert response.status_code == 422


def test_jobs_do_not_stream(client: FlaskClient, provider: Sim) -> None:
    status, body, _ = submit(client, str(uuid.uuid4()), {"prompt": "x", "stream": True})
    assert status == 422 and body["error"]["errors"][0]["field"] == "stream"


def test_another_callers_job_is_404(client: FlaskClient, provider: Sim) -> None:
    *_, headers = submit(client, str(uuid.uuid4()))

    response = client.get(headers["Location"], headers=bearer())
    cancel = client.delete(headers["Location"], headers=bearer())

    assert response.status_code == 404 and cancel.status_code == 404


def test_cancelling_a_queued_job_is_immediate_and_final(client: FlaskClient, provider: Sim) -> None:
    user = str(uuid.uuid4())
    *_, headers = submit(client, user)

    cancelled = client.delete(headers["Location"], headers=bearer(user))
    again = client.delete(headers["Location"], headers=bearer(user))

    assert cancelled.status_code == 200
    assert cancelled.json["data"]["status"] == "cancelled"
    assert again.status_code == 409


def test_a_job_is_refused_at_submission_when_the_budget_cannot_cover_it(
    app: Flask, client: FlaskClient, provider: Sim
) -> None:
    install_policies(
        app, {"ai": one_rule({"tokens": 100, "window": "1d"}, match={"paths": ["/v1/ai/*"]})}
    )

    status, body, _ = submit(client, str(uuid.uuid4()), {"prompt": "x", "max_tokens": 500})

    assert status == 429 and body["error"]["code"] == "AI_TOKEN_LIMIT"


def test_a_v2_job_is_budgeted_against_v2_rules_and_polled_under_v2(
    app: Flask, client: FlaskClient, session: Session, provider: Sim
) -> None:
    install_policies(
        app, {"ai": one_rule({"tokens": 100, "window": "1d"}, match={"paths": ["/v2/ai/*"]})}
    )
    user = str(uuid.uuid4())
    big = {"prompt": "x", "max_tokens": 500}

    v1 = client.post("/v1/ai/jobs", json=big, headers=bearer(user))
    v2 = client.post("/v2/ai/jobs", json=big, headers=bearer(user))
    fits = client.post("/v2/ai/jobs", json={"prompt": "x", "max_tokens": 20}, headers=bearer(user))

    assert v1.status_code == 202  # no rule for /v1
    assert v2.status_code == 429 and v2.json["error"]["code"] == "AI_TOKEN_LIMIT"
    assert fits.status_code == 202
    job_id = fits.json["data"]["id"]
    assert fits.headers["Location"] == f"/v2/ai/jobs/{job_id}"
    assert client.get(fits.headers["Location"], headers=bearer(user)).status_code == 200
    job = session.get(AIJob, uuid.UUID(job_id))
    assert job is not None and job.path == "/v2/ai/jobs"  # the worker reserves against it
    assert job.reservation is not None


def test_a_job_for_a_model_nobody_serves_is_refused_at_submission(
    client: FlaskClient, provider: Sim
) -> None:
    status, body, _ = submit(client, str(uuid.uuid4()), {"prompt": "x", "model": "nope"})
    assert status == 404 and body["error"]["code"] == "AI_MODEL_NOT_FOUND"
