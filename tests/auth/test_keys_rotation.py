"""Signing keys: JWKS, kid thumbprints, rotation, key types, fail-closed settings."""

from __future__ import annotations

from typing import Any

import jwt
import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import SecretStr, ValidationError
from sqlalchemy import Connection

from app.auth.keys import KeyConfigError, generate_pem, load_keyring, thumbprint
from app.factory import create_app
from app.settings import Settings
from tests.auth.conftest import Account, bearer, build_app, error_code

ME = "/v1/auth/me"


@pytest.fixture(scope="module")
def pems() -> dict[str, str]:
    """One PEM private key per type (RSA generation is slow: once per module)."""
    return {
        "a": generate_pem(),
        "b": generate_pem(),
        "rsa": generate_pem("rsa"),
        "ec": generate_pem("ec"),
    }


def _app(settings: Settings, connection: Connection, **keys: str | None) -> Flask:
    update = {k: SecretStr(v) if v else None for k, v in keys.items()}
    return build_app(settings.model_copy(update=update), connection)


def _token(app: Flask, account: Account) -> str:
    with app.app_context():
        response = app.test_client().post(
            "/v1/auth/login", json={"email": account.email, "password": account.password}
        )
    assert response.status_code == 200, response.get_json()
    return str(response.get_json()["data"]["access_token"])


@pytest.fixture
def account(make_user: Any) -> Account:
    """A user who logs in through several differently keyed apps."""
    acct: Account = make_user()
    return acct


def test_jwks_publishes_public_keys_only_with_kid_alg_and_use(client: FlaskClient) -> None:
    response = client.get("/.well-known/jwks.json")

    assert response.status_code == 200
    assert response.mimetype == "application/jwk-set+json"
    assert "max-age" in response.headers["Cache-Control"]
    (key,) = response.get_json()["keys"]
    assert key["kty"] == "OKP" and key["crv"] == "Ed25519"
    assert key["alg"] == "EdDSA" and key["use"] == "sig"
    assert key["kid"] == thumbprint(key)
    assert "d" not in key


def test_kid_is_the_rfc_7638_thumbprint() -> None:
    # RFC 7638 section 3.1 example.
    jwk = {
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6"
        "tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v"
        "-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08q"
        "NLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8aw"
        "apJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    }

    assert thumbprint(jwk) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_rotation_keeps_tokens_of_the_previous_key_valid(
    settings: Settings, connection: Connection, account: Account, pems: dict[str, str]
) -> None:
    before = _app(settings, connection, jwt_signing_key=pems["a"])
    after = _app(
        settings, connection, jwt_signing_key=pems["b"], jwt_previous_signing_key=pems["a"]
    )
    old_token = _token(before, account)

    with after.app_context():
        client = after.test_client()
        assert client.get(ME, headers=bearer(old_token)).status_code == 200
        new_token = _token(after, account)
        keys = client.get("/.well-known/jwks.json").get_json()["keys"]

    kid_a = load_keyring(before.extensions["settings"]).current.kid
    kid_b = load_keyring(after.extensions["settings"]).current.kid
    assert [k["kid"] for k in keys] == [kid_b, kid_a]
    assert jwt.get_unverified_header(new_token)["kid"] == kid_b


def test_a_token_of_a_key_no_longer_configured_is_refused(
    settings: Settings, connection: Connection, account: Account, pems: dict[str, str]
) -> None:
    before = _app(settings, connection, jwt_signing_key=pems["a"])
    later = _app(settings, connection, jwt_signing_key=pems["b"])
    token = _token(before, account)

    with later.app_context():
        response = later.test_client().get(ME, headers=bearer(token))

    assert response.status_code == 401
    assert error_code(response) == "AUTH_INVALID_TOKEN"


def test_the_next_key_can_be_published_before_it_signs(
    settings: Settings, connection: Connection, account: Account, pems: dict[str, str]
) -> None:
    # Two-phase rotation: replicas learn key b (as the extra key) before any signs with it.
    phase_one = _app(
        settings, connection, jwt_signing_key=pems["a"], jwt_previous_signing_key=pems["b"]
    )
    phase_two = _app(settings, connection, jwt_signing_key=pems["b"])

    with phase_one.app_context():
        ok = phase_one.test_client().get(ME, headers=bearer(_token(phase_two, account)))

    assert ok.status_code == 200


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "RS256"), ("ec", "ES256")])
def test_rsa_and_ec_keys_sign_with_their_own_algorithm(
    settings: Settings,
    connection: Connection,
    account: Account,
    pems: dict[str, str],
    kind: str,
    alg: str,
) -> None:
    app = _app(settings, connection, jwt_signing_key=pems[kind])
    token = _token(app, account)

    with app.app_context():
        assert app.test_client().get(ME, headers=bearer(token)).status_code == 200
    assert jwt.get_unverified_header(token)["alg"] == alg


def test_weak_or_malformed_keys_stop_the_app_at_start(settings: Settings) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    for pem in (weak.decode(), "-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n"):
        with pytest.raises(KeyConfigError):
            create_app(settings.model_copy(update={"jwt_signing_key": SecretStr(pem)}))


def _production(**extra: Any) -> Settings:
    return Settings(app_env="production", secret_key="s" * 40, **extra)


@pytest.mark.parametrize("key", [None, "", "changeme", "not a pem"])
def test_production_settings_refuse_a_missing_or_placeholder_signing_key(key: str | None) -> None:
    with pytest.raises(ValidationError, match="JWT_SIGNING_KEY"):
        _production(jwt_signing_key=key)


def test_production_settings_accept_a_pem_signing_key(pems: dict[str, str]) -> None:
    settings = _production(jwt_signing_key=pems["a"])

    assert load_keyring(settings).current.algorithm == "EdDSA"


def test_development_keys_are_derived_from_the_secret_so_workers_agree() -> None:
    one = load_keyring(Settings(app_env="development", secret_key="k" * 40))
    two = load_keyring(Settings(app_env="development", secret_key="k" * 40))
    other = load_keyring(Settings(app_env="development", secret_key="j" * 40))

    assert one.current.kid == two.current.kid != other.current.kid
