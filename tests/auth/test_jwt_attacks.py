"""The JWT attack suite: every forged, stale or revoked token is refused.

Tokens are forged with the real signing key where the attack needs one, so each case
fails for exactly the reason it names.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from flask.testing import FlaskClient

from app.auth.state import AuthState
from tests.auth.conftest import Account, bearer, error_code

ME = "/v1/auth/me"


def b64(data: bytes) -> str:
    """base64url without padding (RFC 7515 section 2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def segment(obj: Any) -> str:
    """One JSON segment of a JWS compact serialization."""
    return b64(json.dumps(obj, separators=(",", ":")).encode())


@pytest.fixture
def account(make_user: Any) -> Account:
    """The user the forged tokens claim to be."""
    acct: Account = make_user()
    return acct


@pytest.fixture
def claims(auth: AuthState, account: Account) -> dict[str, Any]:
    """Claims of a valid access token for `account`."""
    now = int(time.time())
    s = auth.settings
    return {
        "iss": s.jwt_issuer,
        "aud": s.jwt_audience,
        "sub": str(account.user.id),
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "token_type": "access",
        "roles": ["user"],
    }


@pytest.fixture
def sign(auth: AuthState) -> Callable[..., str]:
    """Sign claims with the real current key (headers overridable)."""

    def signer(payload: dict[str, Any], **headers: Any) -> str:
        head = {"kid": auth.keyring.current.kid, "typ": "at+jwt", **headers}
        return jwt.encode(payload, auth.keyring.signing_key, algorithm="EdDSA", headers=head)

    return signer


def _refused(client: FlaskClient, token: str, code: str) -> None:
    response = client.get(ME, headers=bearer(token))
    assert response.status_code == 401, response.get_json()
    assert error_code(response) == code
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert response.get_json()["data"] is None


def test_a_well_formed_token_is_accepted(
    client: FlaskClient, claims: dict[str, Any], sign: Callable[..., str]
) -> None:
    assert client.get(ME, headers=bearer(sign(claims))).status_code == 200


def test_alg_none_is_refused(client: FlaskClient, claims: dict[str, Any], auth: AuthState) -> None:
    header = {"alg": "none", "typ": "at+jwt", "kid": auth.keyring.current.kid}
    claims["roles"] = ["admin"]

    _refused(client, f"{segment(header)}.{segment(claims)}.", "AUTH_INVALID_TOKEN")


def test_hs256_signed_with_the_public_key_is_refused(
    client: FlaskClient, claims: dict[str, Any], auth: AuthState
) -> None:
    # Algorithm confusion: a verifier that lets the header pick HS256 would use the
    # public key (which anyone can fetch from the JWKS) as the HMAC secret.
    public = auth.keyring.current.public_key
    for secret in (
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        json.dumps(auth.keyring.current.jwk).encode(),
    ):
        header = {"alg": "HS256", "typ": "at+jwt", "kid": auth.keyring.current.kid}
        signing_input = f"{segment(header)}.{segment(claims)}"
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _refused(client, f"{signing_input}.{b64(mac)}", "AUTH_INVALID_TOKEN")


def test_an_unknown_kid_is_refused(client: FlaskClient, claims: dict[str, Any]) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    token = jwt.encode(
        claims, attacker, algorithm="EdDSA", headers={"kid": "attacker", "typ": "at+jwt"}
    )

    _refused(client, token, "AUTH_INVALID_TOKEN")


def test_a_foreign_key_presenting_our_kid_is_refused(
    client: FlaskClient, claims: dict[str, Any], auth: AuthState
) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    headers = {"kid": auth.keyring.current.kid, "typ": "at+jwt"}

    _refused(
        client,
        jwt.encode(claims, attacker, algorithm="EdDSA", headers=headers),
        "AUTH_INVALID_TOKEN",
    )


def test_an_embedded_jwk_or_jku_header_is_not_trusted(
    client: FlaskClient, claims: dict[str, Any]
) -> None:
    attacker = ed25519.Ed25519PrivateKey.generate()
    jwk = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(attacker.public_key()))
    for extra in ({"jwk": jwk}, {"jku": "http://127.0.0.1:9/jwks.json"}, {"x5u": "http://x"}):
        headers = {"typ": "at+jwt", **extra}
        token = jwt.encode(claims, attacker, algorithm="EdDSA", headers=headers)
        _refused(client, token, "AUTH_INVALID_TOKEN")


def test_an_rs256_token_for_our_kid_is_refused(
    client: FlaskClient, claims: dict[str, Any], auth: AuthState
) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    headers = {"kid": auth.keyring.current.kid, "typ": "at+jwt"}

    _refused(
        client,
        jwt.encode(claims, rsa_key, algorithm="RS256", headers=headers),
        "AUTH_INVALID_TOKEN",
    )


@pytest.mark.parametrize("kid", [None, 7, ["kid"], {"k": 1}, ""])
def test_a_missing_or_non_string_kid_is_refused(
    client: FlaskClient, claims: dict[str, Any], auth: AuthState, kid: Any
) -> None:
    header: dict[str, Any] = {"alg": "EdDSA", "typ": "at+jwt"}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{segment(header)}.{segment(claims)}"
    key = auth.keyring.signing_key
    assert isinstance(key, ed25519.Ed25519PrivateKey)
    token = f"{signing_input}.{b64(key.sign(signing_input.encode()))}"  # PyJWT refuses non-str kid

    _refused(client, token, "AUTH_INVALID_TOKEN")


def test_an_expired_token_is_refused_as_expired(
    client: FlaskClient, claims: dict[str, Any], sign: Callable[..., str]
) -> None:
    claims.update(iat=claims["iat"] - 3600, nbf=claims["nbf"] - 3600, exp=claims["iat"] - 60)

    _refused(client, sign(claims), "AUTH_TOKEN_EXPIRED")


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_a_token_from_the_future_is_refused(
    client: FlaskClient, claims: dict[str, Any], sign: Callable[..., str], claim: str
) -> None:
    claims[claim] = claims[claim] + 3600
    claims["exp"] += 3600

    _refused(client, sign(claims), "AUTH_INVALID_TOKEN")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("aud", "someone-else"),
        ("aud", ["someone-else", "structured-api"]),
        ("iss", "https://evil.example.com"),
        ("token_type", "refresh"),
        ("roles", ["superuser"]),
        ("roles", "admin"),
        ("sub", 42),
    ],
)
def test_wrong_audience_issuer_type_or_claims_are_refused(
    client: FlaskClient, claims: dict[str, Any], sign: Callable[..., str], claim: str, value: Any
) -> None:
    claims[claim] = value

    _refused(client, sign(claims), "AUTH_INVALID_TOKEN")


@pytest.mark.parametrize(
    "claim", ["exp", "iat", "nbf", "iss", "aud", "jti", "sub", "token_type", "roles"]
)
def test_a_token_missing_a_required_claim_is_refused(
    client: FlaskClient, claims: dict[str, Any], sign: Callable[..., str], claim: str
) -> None:
    del claims[claim]

    _refused(client, sign(claims), "AUTH_INVALID_TOKEN")


@pytest.mark.parametrize("typ", [None, "JWT", "rt+jwt"])
def test_a_token_without_the_access_token_type_header_is_refused(
    client: FlaskClient, claims: dict[str, Any], auth: AuthState, typ: str | None
) -> None:
    headers: dict[str, Any] = {"kid": auth.keyring.current.kid}
    if typ:
        headers["typ"] = typ
    token = jwt.encode(claims, auth.keyring.signing_key, algorithm="EdDSA", headers=headers)
    if typ is None:  # PyJWT adds typ=JWT by default; strip it
        head, rest = token.split(".", 1)
        decoded = json.loads(base64.urlsafe_b64decode(head + "=="))
        decoded.pop("typ", None)
        token = f"{segment(decoded)}.{rest}"

    _refused(client, token, "AUTH_INVALID_TOKEN")


def test_a_tampered_payload_is_refused(client: FlaskClient, account: Account, issue: Any) -> None:
    token = issue(account).access_token
    head, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["roles"] = ["admin"]

    _refused(client, f"{head}.{segment(claims)}.{signature}", "AUTH_INVALID_TOKEN")


def test_a_refresh_token_cannot_be_used_as_an_access_token(
    client: FlaskClient, account: Account, issue: Any
) -> None:
    _refused(client, issue(account).refresh_token, "AUTH_INVALID_TOKEN")


@pytest.mark.parametrize("token", ["abc", "a.b.c", "e30.e30.", "x" * 5000, "Bearer"])
def test_garbage_tokens_are_refused(client: FlaskClient, token: str) -> None:
    _refused(client, token, "AUTH_INVALID_TOKEN")


def test_a_revoked_jti_is_refused_after_logout(
    client: FlaskClient, account: Account, issue: Any
) -> None:
    token = issue(account).access_token
    assert client.post("/v1/auth/logout", headers=bearer(token)).status_code == 200

    _refused(client, token, "AUTH_TOKEN_REVOKED")


def test_a_reused_refresh_token_is_refused_and_revokes_its_family(
    client: FlaskClient, account: Account, issue: Any, settings: Any
) -> None:
    first = issue(account)
    rotated = client.post("/v1/auth/refresh", json={"refresh_token": first.refresh_token})
    assert rotated.status_code == 200
    newer = rotated.get_json()["data"]
    _age_used_tokens(client, settings.refresh_reuse_grace_seconds + 1)

    reused = client.post("/v1/auth/refresh", json={"refresh_token": first.refresh_token})

    assert reused.status_code == 401
    assert error_code(reused) == "AUTH_TOKEN_REUSED"
    again = client.post("/v1/auth/refresh", json={"refresh_token": newer["refresh_token"]})
    assert error_code(again) == "AUTH_TOKEN_REVOKED"
    _refused(client, newer["access_token"], "AUTH_TOKEN_REVOKED")
    _refused(client, first.access_token, "AUTH_TOKEN_REVOKED")


def _age_used_tokens(client: FlaskClient, seconds: int) -> None:
    """Move every `used_at` back in time, as if the reuse came later."""
    from sqlalchemy import text

    from app.core.db import get_session

    with client.application.app_context():
        session = get_session()
        session.execute(
            text("UPDATE auth_refresh_tokens SET used_at = used_at - make_interval(secs => :s)"),
            {"s": seconds},
        )
        session.commit()


def test_tokens_of_a_disabled_user_are_refused(
    client: FlaskClient, account: Account, issue: Any, make_user: Any
) -> None:
    admin = make_user(roles=("admin",))
    admin_token = issue(admin).access_token
    victim = issue(account)
    disabled = client.patch(
        f"/v1/admin/users/{account.user.id}", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert disabled.status_code == 200

    response = client.get(ME, headers=bearer(victim.access_token))

    assert response.status_code == 403
    assert error_code(response) == "AUTH_ACCOUNT_DISABLED"
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": victim.refresh_token})
    assert refreshed.status_code == 401
    assert error_code(refreshed) == "AUTH_TOKEN_REVOKED"
