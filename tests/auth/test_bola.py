"""Two users: neither can read or change the other's keys, sessions or account (BOLA)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.auth.conftest import Account, bearer, error_code


@dataclass
class Tenant:
    """A user with a live session and an API key."""

    account: Account
    headers: dict[str, str]
    refresh_token: str
    session_id: str
    key_id: str
    key: str


@pytest.fixture
def tenants(make_user: Any, issue: Any, make_key: Any) -> tuple[Tenant, Tenant]:
    """Alice and Bob, each with a session and a key."""
    out = []
    for name in ("alice", "bob"):
        account = make_user(email=f"{name}-{uuid.uuid4().hex[:6]}@example.com")
        tokens = issue(account)
        row, key = make_key(account, ["profile:read"])
        out.append(
            Tenant(
                account=account,
                headers=bearer(tokens.access_token),
                refresh_token=tokens.refresh_token,
                session_id=str(tokens.session_id),
                key_id=str(row.id),
                key=key,
            )
        )
    return out[0], out[1]


def test_a_user_lists_only_their_own_keys_and_sessions(
    client: FlaskClient, tenants: tuple[Tenant, Tenant]
) -> None:
    _, bob = tenants

    keys = client.get("/v1/auth/api-keys", headers=bob.headers).get_json()["data"]["data"]
    sessions = client.get("/v1/auth/sessions", headers=bob.headers).get_json()["data"]["data"]

    assert [k["id"] for k in keys] == [bob.key_id]
    assert [s["id"] for s in sessions] == [bob.session_id]


def test_revoking_another_users_key_looks_like_a_missing_key_and_changes_nothing(
    client: FlaskClient, tenants: tuple[Tenant, Tenant]
) -> None:
    alice, bob = tenants

    theirs = client.delete(f"/v1/auth/api-keys/{alice.key_id}", headers=bob.headers)
    missing = client.delete(f"/v1/auth/api-keys/{uuid.uuid4()}", headers=bob.headers)

    assert theirs.status_code == missing.status_code == 404
    assert error_code(theirs) == error_code(missing) == "RES_NOT_FOUND"
    assert client.get("/v1/auth/me", headers={"X-API-Key": alice.key}).status_code == 200


def test_ending_another_users_session_is_not_found_and_changes_nothing(
    client: FlaskClient, tenants: tuple[Tenant, Tenant]
) -> None:
    alice, bob = tenants

    response = client.delete(f"/v1/auth/sessions/{alice.session_id}", headers=bob.headers)

    assert response.status_code == 404
    assert client.get("/v1/auth/me", headers=alice.headers).status_code == 200
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert refreshed.status_code == 200


def test_a_users_key_and_token_only_ever_show_their_own_account(
    client: FlaskClient, tenants: tuple[Tenant, Tenant]
) -> None:
    _, bob = tenants

    via_key = client.get("/v1/auth/me", headers={"X-API-Key": bob.key}).get_json()["data"]
    via_token = client.get("/v1/auth/me", headers=bob.headers).get_json()["data"]

    assert via_key["id"] == via_token["id"] == str(bob.account.user.id)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/v1/admin/users/{alice}", None),
        ("PATCH", "/v1/admin/users/{alice}", {"disabled": True}),
        ("GET", "/v1/admin/users", None),
    ],
)
def test_a_user_cannot_reach_another_account_through_admin_routes(
    client: FlaskClient,
    tenants: tuple[Tenant, Tenant],
    method: str,
    path: str,
    body: dict[str, Any] | None,
) -> None:
    alice, bob = tenants
    url = path.format(alice=alice.account.user.id)

    response = client.open(url, method=method, headers=bob.headers, json=body)

    assert response.status_code == 403
    assert client.get("/v1/auth/me", headers=alice.headers).status_code == 200
