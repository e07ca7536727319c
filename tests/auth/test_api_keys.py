"""API keys: shown once, stored hashed, scopes enforced, expiry, cap, cache, last-used."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import Connection, event, text
from sqlmodel import Session

from app.auth import api_keys as key_service
from app.auth.apikey_cache import LAST_USED_KEY
from app.auth.models.api_key import ApiKey
from app.auth.state import AuthState
from app.settings import Settings
from tests.auth.conftest import Account, bearer, error_code

ME = "/v1/auth/me"
KEYS = "/v1/auth/api-keys"


@contextmanager
def count_sql(connection: Connection) -> Iterator[list[str]]:
    """Collect the SQL statements run on the test connection inside the block."""
    statements: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        statements.append(statement)

    event.listen(connection, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(connection, "before_cursor_execute", record)


@pytest.fixture
def owner(make_user: Any) -> Account:
    """A user who owns keys."""
    acct: Account = make_user()
    return acct


@pytest.fixture
def token(owner: Account, issue: Any) -> str:
    """An access token of `owner`."""
    tokens = issue(owner)
    return str(tokens.access_token)


def test_creating_a_key_shows_it_once_with_a_recognisable_prefix(
    client: FlaskClient, token: str, session: Session
) -> None:
    created = client.post(
        KEYS, json={"name": "ci", "scopes": ["profile:read"]}, headers=bearer(token)
    )

    assert created.status_code == 201
    data = created.get_json()["data"]
    assert data["key"].startswith("sapi_") and len(data["key"]) == 56
    assert data["prefix"] == data["key"][:13]
    assert created.headers["Location"] == f"{KEYS}/{data['id']}"
    listed = client.get(KEYS, headers=bearer(token)).get_json()["data"]
    assert listed["count"] == 1
    assert "key" not in listed["data"][0]
    row = session.get(ApiKey, listed["data"][0]["id"])
    assert row is not None
    assert row.key_hash == hashlib.sha256(data["key"].encode()).hexdigest()


@pytest.mark.parametrize(
    "header",
    [
        lambda k: {"Authorization": f"ApiKey {k}"},
        lambda k: {"Authorization": f"apikey {k}"},
        lambda k: {"X-API-Key": k},
        lambda k: {"Authorization": f"Bearer {k}"},
    ],
    ids=["ApiKey-scheme", "lowercase-scheme", "X-API-Key", "Bearer-sapi"],
)
def test_a_key_is_accepted_in_every_documented_header(
    client: FlaskClient, owner: Account, make_key: Any, header: Any
) -> None:
    _, key = make_key(owner, ["profile:read"])

    response = client.get(ME, headers=header(key))

    assert response.status_code == 200
    assert response.get_json()["data"]["id"] == str(owner.user.id)


def test_sending_two_credentials_is_refused(
    client: FlaskClient, owner: Account, make_key: Any, token: str
) -> None:
    _, key = make_key(owner, ["profile:read"])

    response = client.get(ME, headers={**bearer(token), "X-API-Key": key})

    assert response.status_code == 401
    assert error_code(response) == "AUTH_INVALID_TOKEN"


def test_a_key_without_the_required_scope_is_refused_with_insufficient_scope(
    client: FlaskClient, owner: Account, make_key: Any
) -> None:
    _, key = make_key(owner, ["ai:generate"])

    response = client.get(ME, headers={"X-API-Key": key})

    assert response.status_code == 403
    assert error_code(response) == "AUTH_INSUFFICIENT_SCOPE"
    assert response.get_json()["error"]["details"]["required_scopes"] == ["profile:read"]
    assert 'error="insufficient_scope"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", KEYS), ("POST", KEYS), ("GET", "/v1/auth/sessions"), ("POST", "/v1/auth/logout")],
)
def test_keys_are_refused_on_routes_that_name_no_scope(
    client: FlaskClient, owner: Account, make_key: Any, method: str, path: str
) -> None:
    _, key = make_key(owner, sorted(["profile:read", "ai:generate", "limits:read"]))

    response = client.open(path, method=method, headers={"X-API-Key": key}, json={})

    assert response.status_code == 403
    assert error_code(response) == "AUTH_FORBIDDEN"


def test_unknown_scopes_are_refused_at_creation(client: FlaskClient, token: str) -> None:
    response = client.post(KEYS, json={"name": "x", "scopes": ["root"]}, headers=bearer(token))

    assert response.status_code == 422
    assert "unknown scopes" in response.get_data(as_text=True)


def test_only_admins_may_create_keys_with_admin_scopes(
    client: FlaskClient, token: str, make_user: Any, issue: Any
) -> None:
    body = {"name": "ops", "scopes": ["admin:users"]}
    refused = client.post(KEYS, json=body, headers=bearer(token))
    admin_token = issue(make_user(roles=("admin",))).access_token

    assert refused.status_code == 403
    assert client.post(KEYS, json=body, headers=bearer(admin_token)).status_code == 201


def test_an_expired_key_is_refused_as_expired(
    client: FlaskClient, owner: Account, make_key: Any, session: Session, auth: AuthState
) -> None:
    row, key = make_key(owner, ["profile:read"], expires_in_days=1)
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200
    session.execute(
        text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"),
        {"id": row.id},
    )
    session.commit()
    auth.api_keys.forget([row.key_hash])

    response = client.get(ME, headers={"X-API-Key": key})

    assert response.status_code == 401
    assert error_code(response) == "AUTH_TOKEN_EXPIRED"


def test_a_cached_key_stops_working_when_it_expires(
    client: FlaskClient, owner: Account, make_key: Any, auth: AuthState, session: Session
) -> None:
    row, key = make_key(owner, ["profile:read"], expires_in_days=1)
    row.expires_at = row.created_at.fromtimestamp(time.time() + 1.5, row.created_at.tzinfo)
    session.add(row)
    session.commit()
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200

    time.sleep(1.6)

    assert error_code(client.get(ME, headers={"X-API-Key": key})) == "AUTH_TOKEN_EXPIRED"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A cap of two keys per user."""
    return settings.model_copy(update={"api_key_max_per_user": 2})


def test_the_per_user_cap_is_enforced_and_revoking_frees_a_slot(
    client: FlaskClient, token: str
) -> None:
    body = {"name": "k", "scopes": ["profile:read"]}
    first = client.post(KEYS, json=body, headers=bearer(token)).get_json()["data"]
    assert client.post(KEYS, json=body, headers=bearer(token)).status_code == 201

    over = client.post(KEYS, json=body, headers=bearer(token))

    assert over.status_code == 409
    assert error_code(over) == "RES_CONFLICT"
    assert over.get_json()["error"]["details"]["limit"] == 2
    assert client.delete(f"{KEYS}/{first['id']}", headers=bearer(token)).status_code == 200
    assert client.post(KEYS, json=body, headers=bearer(token)).status_code == 201


def test_a_revoked_key_is_refused_at_once_even_when_cached(
    client: FlaskClient, owner: Account, make_key: Any, token: str
) -> None:
    row, key = make_key(owner, ["profile:read"])
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200  # now cached

    assert client.delete(f"{KEYS}/{row.id}", headers=bearer(token)).status_code == 200

    response = client.get(ME, headers={"X-API-Key": key})
    assert response.status_code == 401
    assert error_code(response) == "AUTH_TOKEN_REVOKED"
    assert client.get(KEYS, headers=bearer(token)).get_json()["data"]["count"] == 0
    assert client.delete(f"{KEYS}/{row.id}", headers=bearer(token)).status_code == 200


def test_a_malformed_key_is_refused_without_any_lookup(
    client: FlaskClient, owner: Account, make_key: Any, connection: Connection
) -> None:
    _, key = make_key(owner, ["profile:read"])
    forged = key[:-1] + ("0" if key[-1] != "0" else "1")  # checksum no longer matches

    with count_sql(connection) as statements:
        response = client.get(ME, headers={"X-API-Key": forged})

    assert error_code(response) == "AUTH_INVALID_TOKEN"
    assert statements == []


def test_a_key_is_resolved_from_the_database_once_then_from_redis(
    client: FlaskClient, owner: Account, make_key: Any, connection: Connection
) -> None:
    _, key = make_key(owner, ["limits:read", "profile:read"])
    with count_sql(connection) as first:
        client.get(ME, headers={"X-API-Key": key})
    with count_sql(connection) as second:
        client.get(ME, headers={"X-API-Key": key})

    lookups = [s for s in first if "FROM api_keys" in s]
    assert len(lookups) == 1
    assert not [s for s in second if "api_keys" in s]


def test_using_a_key_buffers_last_used_in_redis_and_a_flush_writes_it(
    client: FlaskClient,
    owner: Account,
    make_key: Any,
    connection: Connection,
    session: Session,
    auth: AuthState,
) -> None:
    row, key = make_key(owner, ["profile:read"])
    with count_sql(connection) as statements:
        for _ in range(5):
            assert client.get(ME, headers={"X-API-Key": key}).status_code == 200

    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE")]
    assert auth.redis.hexists(LAST_USED_KEY, str(row.id))
    session.refresh(row)
    assert row.last_used_at is None

    assert key_service.flush_last_used(session=session, cache=auth.api_keys) == 1

    session.refresh(row)
    assert row.last_used_at is not None
    assert abs(row.last_used_at.timestamp() - time.time()) < 60
    assert not auth.redis.exists(LAST_USED_KEY)
    listed = client.get(KEYS, headers=bearer(_token(owner, client)))
    assert listed.get_json()["data"]["data"][0]["last_used_at"] is not None


def _token(owner: Account, client: FlaskClient) -> str:
    response = client.post(
        "/v1/auth/login", json={"email": owner.email, "password": owner.password}
    )
    return str(response.get_json()["data"]["access_token"])


def test_a_failed_flush_puts_the_batch_back_keeping_newer_times(auth: AuthState) -> None:
    auth.redis.hset(LAST_USED_KEY, mapping={"a": "100", "b": "300"})
    batch, times = auth.api_keys.take_last_used("t1")
    assert times == {"a": 100.0, "b": 300.0}
    auth.redis.hset(LAST_USED_KEY, mapping={"a": "200"})  # used again meanwhile

    auth.api_keys.put_back(batch)

    assert auth.redis.hgetall(LAST_USED_KEY) == {b"a": b"200", b"b": b"300"}
    assert not auth.redis.exists(batch)


def test_keys_of_a_disabled_owner_are_refused_even_when_cached(
    client: FlaskClient, owner: Account, make_key: Any, make_user: Any, issue: Any
) -> None:
    _, key = make_key(owner, ["profile:read"])
    assert client.get(ME, headers={"X-API-Key": key}).status_code == 200
    admin = issue(make_user(roles=("admin",))).access_token

    client.patch(f"/v1/admin/users/{owner.user.id}", json={"disabled": True}, headers=bearer(admin))

    response = client.get(ME, headers={"X-API-Key": key})
    assert response.status_code == 403
    assert error_code(response) == "AUTH_ACCOUNT_DISABLED"


def test_a_demoted_owner_s_admin_key_loses_admin_access(
    client: FlaskClient, make_user: Any, make_key: Any, issue: Any
) -> None:
    ops = make_user(roles=("admin",))
    _, key = make_key(ops, ["admin:users"])
    assert client.get("/v1/admin/users", headers={"X-API-Key": key}).status_code == 200
    other_admin = issue(make_user(roles=("admin",))).access_token

    client.patch(
        f"/v1/admin/users/{ops.user.id}", json={"roles": ["user"]}, headers=bearer(other_admin)
    )

    response = client.get("/v1/admin/users", headers={"X-API-Key": key})
    assert response.status_code == 403
    assert error_code(response) == "AUTH_FORBIDDEN"
