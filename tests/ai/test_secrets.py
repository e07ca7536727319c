"""Provider keys: stored only encrypted, used in memory, never in responses, logs or rows."""

from __future__ import annotations

import hashlib
import logging

import pytest
from cryptography.fernet import Fernet
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text
from sqlmodel import Session

from app.ai import credentials as ai_credentials
from app.config_store.extension import config_store
from app.config_store.service import Source
from app.core.crypto import keyring
from app.settings import Settings
from tests.ai.support import Sim, bearer, provider_spec, written

KEY = "sk-live-SECRET-4f9c2a7e1b3d5f60"
NEW_KEY = "sk-live-ROTATED-0a1b2c3d4e5f6a7b"


def fingerprint(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest.fixture
def admin() -> dict[str, str]:
    """Headers of an admin (access token)."""
    return bearer(roles=("admin",))


def put_provider(client: FlaskClient, admin: dict[str, str], sim: Sim) -> None:
    response = client.put(
        "/v1/admin/ai-providers/vault", json={"spec": provider_spec(sim)}, headers=admin
    )
    assert response.status_code in (200, 201), response.json


def test_a_key_set_through_the_admin_api_is_used_but_never_shown_logged_or_stored_in_clear(
    app: Flask,
    session: Session,
    client: FlaskClient,
    sim: Sim,
    admin: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    sim.accept_keys(KEY)
    put_provider(client, admin, sim)

    stored = client.put(
        "/v1/admin/ai-providers/vault/credentials", json={"apiKey": KEY}, headers=admin
    )
    config_store(app).refresh(session.connection())
    shown = client.get("/v1/admin/ai-providers/vault", headers=admin)
    snapshot = client.get("/v1/admin/config", headers=admin)
    answer = client.post("/v1/ai/generate", json={"prompt": "hello"}, headers=bearer())

    assert stored.status_code == 200
    assert stored.json["data"]["credential_version"]
    assert shown.json["data"]["credential"]["present"] is True
    assert answer.status_code == 200, answer.json
    # Used: the provider received exactly this key.
    assert sim.requests()[-1]["key_sha256"] == fingerprint(KEY)
    # Never shown: no response carries it.
    for response in (stored, shown, snapshot, answer):
        assert KEY not in response.get_data(as_text=True)
    # Never in the database in clear: not in the provider row, not in the audit trail.
    assert written(app) == 1
    for table in ("config_object", "config_audit", "ai_generation"):
        dump = session.execute(text(f"SELECT CAST(t AS text) FROM {table} t")).scalars().all()
        assert dump and not any(KEY in row for row in dump), table
    ciphertext = session.execute(
        text("SELECT credential_ciphertext FROM config_object WHERE name = 'vault'")
    ).scalar_one()
    assert keyring(app.extensions["settings"]).decrypt(ciphertext) == KEY
    # Never logged: not by us, not by httpx.
    out, err = capfd.readouterr()
    assert KEY not in caplog.text and KEY not in out and KEY not in err


def test_the_credentials_endpoint_is_admin_only_and_validates_the_body(
    client: FlaskClient, sim: Sim, admin: dict[str, str]
) -> None:
    put_provider(client, admin, sim)

    as_user = client.put(
        "/v1/admin/ai-providers/vault/credentials", json={"apiKey": KEY}, headers=bearer()
    )
    empty = client.put(
        "/v1/admin/ai-providers/vault/credentials", json={"apiKey": ""}, headers=admin
    )
    unknown = client.put(
        "/v1/admin/ai-providers/nope/credentials", json={"apiKey": KEY}, headers=admin
    )

    assert as_user.status_code == 403
    assert empty.status_code == 422 and KEY not in empty.get_data(as_text=True)
    assert unknown.status_code == 404


def test_a_changed_key_is_used_from_the_next_call_without_a_restart(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, admin: dict[str, str]
) -> None:
    put_provider(client, admin, sim)
    client.put("/v1/admin/ai-providers/vault/credentials", json={"apiKey": KEY}, headers=admin)
    config_store(app).refresh(session.connection())
    assert client.post("/v1/ai/generate", json={"prompt": "a"}, headers=bearer()).status_code == 200

    sim.accept_keys(NEW_KEY)  # the old key is revoked at the provider
    client.put("/v1/admin/ai-providers/vault/credentials", json={"apiKey": NEW_KEY}, headers=admin)
    config_store(app).refresh(session.connection())
    response = client.post("/v1/ai/generate", json={"prompt": "b"}, headers=bearer())

    assert response.status_code == 200
    assert sim.requests()[-1]["key_sha256"] == fingerprint(NEW_KEY)


def test_rotating_the_encryption_key_re_encrypts_every_provider_key(
    app: Flask, session: Session, client: FlaskClient, sim: Sim, admin: dict[str, str]
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = Settings(
        **{**app.extensions["settings"].model_dump(), "credential_encryption_keys": old}
    )
    after = Settings(**{**before.model_dump(), "credential_encryption_keys": f"{new},{old}"})
    put_provider(client, admin, sim)
    ai_credentials.store_credential(
        session=session, name="vault", api_key=KEY, source=Source.admin(),
        actor="test", settings=before,
    )  # fmt: skip
    token_before = session.execute(
        text("SELECT credential_ciphertext FROM config_object WHERE name = 'vault'")
    ).scalar_one()

    changed = ai_credentials.reencrypt_all(session=session, settings=after, actor="test")
    again = ai_credentials.reencrypt_all(session=session, settings=after, actor="test")

    token_after = session.execute(
        text("SELECT credential_ciphertext FROM config_object WHERE name = 'vault'")
    ).scalar_one()
    assert changed == ["vault"] and again == []
    assert token_after != token_before
    only_new = Settings(**{**before.model_dump(), "credential_encryption_keys": new})
    assert keyring(only_new).decrypt(token_after) == KEY  # the old key can now be dropped
