"""The `identify` / `require_auth` contract other subsystems build on."""

from __future__ import annotations

import dataclasses
import threading
import uuid
from typing import Any

import pytest
from flask import Flask, g
from flask.testing import FlaskClient
from sqlalchemy import Connection

from app.auth.caller import ANONYMOUS, Caller
from app.auth.identify import current_caller, identify
from app.settings import Settings
from tests.auth.conftest import Account, bearer, build_app, error_code
from tests.auth.test_api_keys import count_sql


@pytest.fixture
def account(make_user: Any) -> Account:
    """A plain user."""
    acct: Account = make_user()
    return acct


def test_identify_verifies_an_access_token_without_touching_the_database(
    app: Flask, account: Account, issue: Any, connection: Connection
) -> None:
    tokens = issue(account)

    with app.test_request_context(headers=bearer(tokens.access_token)):
        with count_sql(connection) as statements:
            identify()
        caller = current_caller()

    assert statements == []
    assert caller == Caller(
        kind="user",
        subject=str(account.user.id),
        roles=frozenset({"user"}),
        scopes=frozenset({"*"}),
        key_id=None,
        token_id=caller.token_id,
        session_id=str(tokens.session_id),
        expires_at=caller.expires_at,
    )
    assert caller.token_id and caller.rate_limit_key == f"user:{account.user.id}"


def test_identify_resolves_an_api_key_into_a_caller(
    app: Flask, account: Account, make_key: Any
) -> None:
    row, key = make_key(account, ["profile:read", "ai:generate"])

    with app.test_request_context(headers={"X-API-Key": key}):
        identify()
        caller = g.caller

    assert caller.kind == "api_key"
    assert caller.subject == str(account.user.id)
    assert caller.key_id == str(row.id)
    assert caller.scopes == frozenset({"profile:read", "ai:generate"})
    assert caller.rate_limit_key == f"api_key:{row.id}"


def test_the_caller_is_frozen_and_anonymous_outside_a_request() -> None:
    assert current_caller() is ANONYMOUS
    with pytest.raises(dataclasses.FrozenInstanceError):
        ANONYMOUS.kind = "user"  # type: ignore[misc]


def test_identify_runs_right_after_the_request_id_hooks(app: Flask) -> None:
    hooks = [f.__name__ for f in app.before_request_funcs[None]]

    assert hooks.index("identify") > hooks.index("_assign_request_id")
    for later in ("ratelimit", "version"):
        for name in hooks:
            if later in name:
                assert hooks.index(name) > hooks.index("identify"), hooks


def test_a_bad_credential_does_not_break_a_public_route(client: FlaskClient) -> None:
    response = client.get("/livez", headers=bearer("not-a-token"))

    assert response.status_code == 200


@pytest.mark.parametrize(
    "authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc", "Digest x"]
)
def test_unsupported_or_empty_authorization_is_an_invalid_token(
    client: FlaskClient, authorization: str
) -> None:
    response = client.get("/v1/auth/me", headers={"Authorization": authorization})

    assert response.status_code == 401
    assert error_code(response) == "AUTH_INVALID_TOKEN"


def test_no_credential_is_auth_required_with_a_bearer_challenge(client: FlaskClient) -> None:
    response = client.get("/v1/auth/me")

    assert response.status_code == 401
    assert error_code(response) == "AUTH_REQUIRED"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_authorization_runs_before_body_validation(client: FlaskClient) -> None:
    response = client.post("/v1/auth/api-keys", json={"bogus": True})

    assert response.status_code == 401


def test_a_view_s_own_not_found_passes_through(
    client: FlaskClient, account: Account, issue: Any
) -> None:
    token = issue(account).access_token

    response = client.delete(f"/v1/auth/api-keys/{uuid.uuid4()}", headers=bearer(token))

    assert response.status_code == 404
    assert error_code(response) == "RES_NOT_FOUND"


def test_a_view_s_own_validation_error_passes_through(
    client: FlaskClient, account: Account, issue: Any
) -> None:
    token = issue(account).access_token

    response = client.post("/v1/auth/api-keys", json={"name": ""}, headers=bearer(token))

    assert response.status_code == 422
    assert error_code(response) == "VAL_INVALID_FORMAT"


def test_readonly_users_cannot_write_but_can_end_their_own_session(
    client: FlaskClient, make_user: Any, issue: Any
) -> None:
    tokens = issue(make_user(roles=("readonly",)))
    headers = bearer(tokens.access_token)

    created = client.post(
        "/v1/auth/api-keys", json={"name": "x", "scopes": ["ai:generate"]}, headers=headers
    )
    listed = client.get("/v1/auth/sessions", headers=headers)
    ended = client.delete(f"/v1/auth/sessions/{tokens.session_id}", headers=headers)

    assert created.status_code == 403 and error_code(created) == "AUTH_FORBIDDEN"
    assert listed.status_code == 200
    assert ended.status_code == 200


@pytest.fixture
def dead_redis_app(settings: Settings, connection: Connection) -> Flask:
    """An app whose Redis is a closed port (Redis is down)."""
    from tests.support.processes import free_port

    down = settings.model_copy(update={"redis_url": f"redis://127.0.0.1:{free_port()}/0"})
    return build_app(down, connection)


def test_credentials_fail_closed_when_redis_is_down(
    dead_redis_app: Flask, account: Account, issue: Any
) -> None:
    token = issue(account).access_token
    client = dead_redis_app.test_client()

    protected = client.get("/v1/auth/me", headers=bearer(token))
    public = client.get("/livez", headers=bearer(token))

    assert protected.status_code == 503
    assert error_code(protected) == "SYS_CACHE_UNAVAILABLE"
    assert public.status_code == 200


def _round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count what redis-py sends from this thread (one send per command or pipeline: a
    round trip). Only this thread: background threads of apps made by earlier tests (the
    revocation mirror's PINGs, history drainers) send on their own schedule."""
    from redis.connection import AbstractConnection

    sent = [0]
    original = AbstractConnection.send_packed_command
    me = threading.get_ident()

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        if threading.get_ident() == me:
            sent[0] += 1
        original(self, command, check_health)

    monkeypatch.setattr(AbstractConnection, "send_packed_command", counting)
    return sent


def test_a_token_adds_no_redis_round_trip_when_the_limiter_reads_the_revocation_keys(
    client: FlaskClient, account: Account, issue: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = issue(account).access_token
    path = "/.well-known/jwks.json"  # public and rate limited
    client.get(path)
    client.get(path, headers=bearer(token))
    sent = _round_trips(monkeypatch)

    assert client.get(path).status_code == 200
    anonymous, sent[0] = sent[0], 0
    assert client.get(path, headers=bearer(token)).status_code == 200

    assert sent[0] == anonymous


def test_a_revoked_token_is_refused_when_the_limiter_uses_another_redis(
    settings: Settings, connection: Connection, account: Account, issue: Any
) -> None:
    # The limiter cannot read revocation keys kept in another Redis: identify checks itself.
    other = settings.redis_url.rsplit("/", 1)[0] + "/5"
    app = build_app(settings.model_copy(update={"rate_limit_redis_url": other}), connection)
    token = issue(account).access_token
    with app.app_context():
        client = app.test_client()
        assert client.post("/v1/auth/logout", headers=bearer(token)).status_code == 200

        response = client.get("/v1/auth/me", headers=bearer(token))

    assert response.status_code == 401
    assert error_code(response) == "AUTH_TOKEN_REVOKED"


def test_a_revoked_token_is_refused_on_a_route_the_limiter_skips(
    client: FlaskClient, account: Account, issue: Any, app: Flask
) -> None:
    from app.auth.decorators import require_auth as guard

    token = issue(account).access_token
    client.post("/v1/auth/logout", headers=bearer(token))

    with app.test_request_context("/livez", headers=bearer(token)):
        identify()
        with pytest.raises(Exception) as refused:
            guard()(lambda: "view ran")()

    assert getattr(refused.value, "code", None) == "AUTH_TOKEN_REVOKED"
