"""A provider key follows no changed URL, and the gateway reaches only allowed addresses.

Real simulator processes stand for the legitimate provider (`sim`), a host an admin (or a
stolen `admin:config` API key) points the provider at to collect the key (`sim_b`), and a
backstop provider of the same model (`slow_sim`), so a refused provider shows as a skipped
attempt in a 200 answer. The simulators record the SHA-256 of every key they receive.
"""

from __future__ import annotations

import hashlib
from typing import Any

import httpx
import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlmodel import Session

from app.ai.errors import FailureKind, ProviderFailure
from app.ai.providers import build_provider
from app.ai.transport import AddressRefused, GuardedBackend, GuardedTransport
from app.ai.types import ChatRequest, Message
from app.config_store.extension import config_store
from app.config_store.service import Source, upsert_config
from app.core.specs import AIProviderSpec
from app.settings import Settings
from tests.ai.support import Sim, bearer, install_provider, provider_spec

KEY = "sk-live-ORIGIN-5e1d9c0b7a3f2e48"
URL = "/v1/admin/ai-providers/vault"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The AI test settings with the allow-list spelled out (the simulators' loopback only)."""
    return settings.model_copy(update={"ai_allowed_http_hosts": ["127.0.0.1"]})


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of an admin (access token)."""
    return bearer(roles=("admin",))


@pytest.fixture
def backstop(app: Flask, session: Session, slow_sim: Sim) -> Sim:
    """A second, keyless provider of `sim-small` behind every other (priority 50)."""
    install_provider(
        app, session, "backstop", provider_spec(slow_sim, priority=50, secret=False),
        refresh=False,
    )  # fmt: skip
    return slow_sim


def generate(client: FlaskClient) -> dict[str, Any]:
    response = client.post("/v1/ai/generate", json={"prompt": "hi"}, headers=bearer())
    assert response.status_code == 200, response.json
    data: dict[str, Any] = response.json["data"]  # type: ignore[index]
    return data


def test_moving_a_provider_to_another_origin_drops_its_key_and_the_new_origin_gets_none(
    app: Flask,
    session: Session,
    client: FlaskClient,
    admin: dict[str, str],
    sim: Sim,
    sim_b: Sim,
    backstop: Sim,
) -> None:
    assert client.put(URL, json={"spec": provider_spec(sim)}, headers=admin).status_code == 201
    stored = client.put(f"{URL}/credentials", json={"apiKey": KEY}, headers=admin)
    assert stored.status_code == 200
    config_store(app).refresh(session.connection())
    assert generate(client)["provider"] == "vault"
    assert sim.requests()[-1]["key_sha256"] == fingerprint(KEY)

    # Same provider, same Secret reference: only the host changed, to one that collects keys.
    moved = client.put(URL, json={"spec": provider_spec(sim_b)}, headers=admin)
    config_store(app).refresh(session.connection())
    answer = generate(client)

    assert moved.status_code == 200, moved.json
    assert moved.json["data"]["credential"] is None
    warning = next(w for w in moved.json["warnings"] if w["code"] == "AI_CREDENTIAL_CLEARED")
    assert f"{URL}/credentials" in warning["message"]
    assert client.get(URL, headers=admin).json["data"]["credential"] is None
    # The next generate cannot use the old key: the provider is skipped, the new origin
    # received nothing at all, and the backstop answered.
    assert answer["provider"] == "backstop"
    assert answer["attempts"] == [{"provider": "vault", "reason": "no_credential"}]
    assert sim_b.requests() == []
    # The ciphertext is gone from the row; the audit trail records the drop.
    row = session.execute(
        text("SELECT credential_ciphertext, credential_version FROM config_object "
             "WHERE kind = 'AIProvider' AND name = 'vault'")
    ).one()  # fmt: skip
    assert tuple(row) == (None, None)
    audit = client.get("/v1/admin/audit?name=vault&limit=1", headers=admin).json["data"]["data"]
    assert "credentialVersion" in audit[0]["before"]
    assert "credentialVersion" not in audit[0]["after"]

    # Only sending the key again, on purpose, makes the new origin receive it.
    client.put(f"{URL}/credentials", json={"apiKey": KEY}, headers=admin)
    config_store(app).refresh(session.connection())
    assert generate(client)["provider"] == "vault"
    assert sim_b.requests()[-1]["key_sha256"] == fingerprint(KEY)


def test_a_keyless_spec_on_the_new_origin_is_called_without_the_old_key(
    app: Flask, session: Session, client: FlaskClient, admin: dict[str, str], sim: Sim, sim_b: Sim
) -> None:
    client.put(URL, json={"spec": provider_spec(sim)}, headers=admin)
    client.put(f"{URL}/credentials", json={"apiKey": KEY}, headers=admin)

    # Dropping the Secret reference as well would make the gateway call without a key; it
    # must not fall back to the key stored for the old origin.
    moved = client.put(URL, json={"spec": provider_spec(sim_b, secret=False)}, headers=admin)
    config_store(app).refresh(session.connection())

    assert moved.status_code == 200 and moved.json["data"]["credential"] is None
    assert generate(client)["provider"] == "vault"
    assert [r["key_sha256"] for r in sim_b.requests()] == [None]


def test_editing_a_provider_on_the_same_origin_keeps_its_key(
    app: Flask, session: Session, client: FlaskClient, admin: dict[str, str], sim: Sim
) -> None:
    client.put(URL, json={"spec": provider_spec(sim)}, headers=admin)
    client.put(f"{URL}/credentials", json={"apiKey": KEY}, headers=admin)

    edited = provider_spec(sim, priority=5, timeoutSeconds=3, baseURL=f"{sim.url}/v1/")
    response = client.put(URL, json={"spec": edited}, headers=admin)
    config_store(app).refresh(session.connection())

    assert response.status_code == 200
    assert response.json["data"]["credential"]["present"] is True
    assert not any(w["code"] == "AI_CREDENTIAL_CLEARED" for w in response.json["warnings"])
    assert generate(client)["provider"] == "vault"
    assert sim.requests()[-1]["key_sha256"] == fingerprint(KEY)


@pytest.mark.parametrize(
    ("base_url", "says"),
    [
        ("http://api.example.com/v1", "AI_ALLOWED_HTTP_HOSTS"),  # plain http, host not listed
        ("http://localhost:9/v1", "AI_ALLOWED_HTTP_HOSTS"),  # loopback by another name
        ("https://169.254.169.254/latest", "never a provider"),  # instance metadata
        ("http://169.254.169.254/latest", "never a provider"),
        ("https://169.254.10.20/v1", "never a provider"),  # any link-local address
        ("https://[fe80::1]/v1", "never a provider"),
        ("https://[fd00:ec2::254]/v1", "never a provider"),
        ("http://0xa9fea9fe/v1", "never a provider"),  # 169.254.169.254 in hexadecimal
        ("https://metadata.google.internal/computeMetadata/v1", "never a provider"),
        ("ftp://files.example.com/", "'http' or 'https'"),
    ],
)
def test_refused_base_urls_are_422_on_spec_base_url_and_nothing_is_stored(
    session: Session, client: FlaskClient, admin: dict[str, str], base_url: str, says: str
) -> None:
    spec = {"type": "OpenAICompatible", "baseURL": base_url, "models": [{"name": "m"}]}

    response = client.put(URL, json={"spec": spec}, headers=admin)

    assert response.status_code == 422, response.json
    error = response.json["error"]
    assert error["code"] == "VAL_INVALID_FORMAT"
    (field,) = error["errors"]
    assert field["field"] == "spec.baseURL" and says in field["message"]
    count = session.execute(text("SELECT count(*) FROM config_object WHERE name = 'vault'"))
    assert count.scalar_one() == 0


def test_plain_http_is_accepted_for_an_allow_listed_host(
    client: FlaskClient, admin: dict[str, str], sim: Sim
) -> None:
    response = client.put(URL, json={"spec": provider_spec(sim)}, headers=admin)
    assert response.status_code == 201, response.json


def test_a_row_written_past_the_checks_is_refused_when_called(
    app: Flask, session: Session, client: FlaskClient, sim_b: Sim, backstop: Sim
) -> None:
    # As written before this rule existed (no allow-list at write time): `localhost` is not
    # in AI_ALLOWED_HTTP_HOSTS, yet resolves to the simulator's loopback address.
    spec = provider_spec(sim_b, priority=1, baseURL=f"http://localhost:{sim_b.port}/v1")
    upsert_config(
        session=session, kind="AIProvider", name="legacy", spec=spec, source=Source.admin(),
        actor="test",
    )  # fmt: skip
    install_provider(app, session, "legacy", spec, api_key=KEY)

    answer = generate(client)

    assert answer["provider"] == "backstop"
    assert answer["attempts"] == [{"provider": "legacy", "reason": "origin_refused"}]
    assert sim_b.requests() == []


def test_a_metadata_address_stored_straight_into_postgresql_is_never_loaded(
    app: Flask, session: Session, client: FlaskClient, sim_b: Sim, backstop: Sim
) -> None:
    install_provider(app, session, "legacy", provider_spec(sim_b, priority=1), api_key=KEY)
    session.execute(
        text("UPDATE config_object SET spec = jsonb_set(spec, '{baseURL}', "
             "'\"http://169.254.169.254/latest\"') WHERE name = 'legacy'")
    )  # fmt: skip
    session.execute(text("UPDATE config_generation SET generation = generation + 1"))
    snapshot = config_store(app).refresh(session.connection())

    assert [(i.kind, i.name) for i in snapshot.invalid] == [("AIProvider", "legacy")]
    assert generate(client)["provider"] == "backstop"
    assert sim_b.requests() == []


def request() -> ChatRequest:
    return ChatRequest(model="sim-small", messages=(Message("user", "hi"),), max_tokens=8)


def provider_via(sim: Sim, host: str, resolve: Any, spec: dict[str, Any] | None = None) -> Any:
    """A provider calling `host` (resolved by `resolve`) on the simulator's port, with KEY."""
    spec = spec or provider_spec(sim, baseURL=f"http://{host}:{sim.port}/v1")
    transport = GuardedTransport(
        limits=httpx.Limits(max_connections=4), backend=GuardedBackend(resolve=resolve)
    )
    return build_provider(
        name="p", spec=AIProviderSpec.model_validate(spec), api_key=KEY, transport=transport,
        connect_timeout=2, allowed_http_hosts=[host],
    )  # fmt: skip


def test_the_transport_connects_to_the_address_it_checked(sim: Sim) -> None:
    resolved: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        resolved.append(f"{host}:{port}")
        return ["127.0.0.1"]

    completion = provider_via(sim, "provider.test", resolve).complete(request(), timeout=5)

    assert completion.text and resolved == [f"provider.test:{sim.port}"]
    assert sim.requests()[-1]["key_sha256"] == fingerprint(KEY)


def test_a_name_that_resolves_to_a_metadata_address_is_refused_before_connecting(
    sim: Sim,
) -> None:
    # DNS rebinding: the name answered loopback when the provider was configured; now
    # (new connection, new lookup) it also answers the metadata endpoint.
    answers = iter([["127.0.0.1"], ["127.0.0.1", "169.254.169.254"]])

    def resolve(host: str, port: int) -> list[str]:
        assert (host, port) == ("rebind.test", sim.port)
        return next(answers)

    provider = provider_via(sim, "rebind.test", resolve)
    assert provider.complete(request(), timeout=5).text
    provider.transport.close()  # drop the pooled connection: the next call resolves again

    with pytest.raises(ProviderFailure) as caught:
        provider.complete(request(), timeout=5)

    assert caught.value.kind is FailureKind.ORIGIN_REFUSED and not caught.value.retryable
    assert len(sim.requests()) == 1
    with pytest.raises(AddressRefused):
        GuardedBackend(resolve=lambda *_: ["fe80::1%eth0"]).addresses("x.test", 80)


def test_a_spec_that_bypassed_validation_is_refused_at_call_time(sim: Sim) -> None:
    # model_construct skips every validator, as a row of an older release might have.
    spec = AIProviderSpec.model_construct(
        **{**AIProviderSpec.model_validate(provider_spec(sim)).__dict__,
           "baseURL": "http://169.254.169.254/latest"}
    )  # fmt: skip
    provider = build_provider(
        name="p", spec=spec, api_key=KEY, transport=httpx.HTTPTransport(), connect_timeout=2,
        allowed_http_hosts=["169.254.169.254"],
    )  # fmt: skip

    with pytest.raises(ProviderFailure) as caught:
        provider.complete(request(), timeout=5)

    assert caught.value.kind is FailureKind.ORIGIN_REFUSED
    assert sim.requests() == []
