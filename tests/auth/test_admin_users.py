"""`/v1/admin/users`: list and filter, disable and re-enable, change roles."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient

from tests.auth.conftest import Account, bearer, error_code

USERS = "/v1/admin/users"


@pytest.fixture
def admin(make_user: Any) -> Account:
    """An admin account."""
    acct: Account = make_user(roles=("admin",))
    return acct


@pytest.fixture
def headers(admin: Account, issue: Any) -> dict[str, str]:
    """The admin's Authorization header."""
    return bearer(issue(admin).access_token)


def test_admins_list_users_with_filters_and_a_total(
    client: FlaskClient, headers: dict[str, str], make_user: Any
) -> None:
    alice = make_user(email="alice.filter@example.com")
    make_user(roles=("readonly",), email="bob.filter@example.com")

    everyone = client.get(USERS, headers=headers).get_json()["data"]
    by_email = client.get(f"{USERS}?email=ALICE.FIL", headers=headers).get_json()["data"]
    readonly = client.get(f"{USERS}?role=readonly", headers=headers).get_json()["data"]
    page = client.get(f"{USERS}?limit=1&offset=1", headers=headers).get_json()["data"]

    assert everyone["count"] == 3
    assert [u["email"] for u in by_email["data"]] == [alice.email]
    assert [u["email"] for u in readonly["data"]] == ["bob.filter@example.com"]
    assert page["count"] == 3 and len(page["data"]) == 1
    assert "password_hash" not in str(everyone)


def test_the_email_filter_treats_wildcards_literally(
    client: FlaskClient, headers: dict[str, str], make_user: Any
) -> None:
    make_user(email="plain@example.com")

    assert client.get(f"{USERS}?email=%25", headers=headers).get_json()["data"]["count"] == 0
    assert client.get(f"{USERS}?email=_", headers=headers).get_json()["data"]["count"] == 0


def test_reading_an_unknown_user_is_not_found(client: FlaskClient, headers: dict[str, str]) -> None:
    response = client.get(f"{USERS}/{uuid.uuid4()}", headers=headers)

    assert response.status_code == 404


def test_disabling_ends_sessions_and_refuses_login_until_re_enabled(
    client: FlaskClient, headers: dict[str, str], make_user: Any, issue: Any
) -> None:
    user = make_user()
    tokens = issue(user)

    disabled = client.patch(f"{USERS}/{user.user.id}", json={"disabled": True}, headers=headers)

    assert disabled.get_json()["data"]["disabled"] is True
    login = {"email": user.email, "password": user.password}
    assert error_code(client.post("/v1/auth/login", json=login)) == "AUTH_ACCOUNT_DISABLED"
    assert client.get(f"{USERS}?disabled=true", headers=headers).get_json()["data"]["count"] == 1

    client.patch(f"{USERS}/{user.user.id}", json={"disabled": False}, headers=headers)

    assert client.post("/v1/auth/login", json=login).status_code == 200
    old = client.get("/v1/auth/me", headers=bearer(tokens.access_token))
    assert error_code(old) == "AUTH_TOKEN_REVOKED"
    refreshed = client.post("/v1/auth/refresh", json={"refresh_token": tokens.refresh_token})
    assert error_code(refreshed) == "AUTH_TOKEN_REVOKED"


def test_changing_roles_is_reflected_in_the_user(
    client: FlaskClient, headers: dict[str, str], make_user: Any
) -> None:
    user = make_user()

    response = client.patch(
        f"{USERS}/{user.user.id}", json={"roles": ["admin", "user"]}, headers=headers
    )

    assert response.status_code == 200
    assert response.get_json()["data"]["roles"] == ["admin", "user"]


@pytest.mark.parametrize("body", [{"disabled": True}, {"roles": ["user"]}])
def test_admins_cannot_disable_or_demote_themselves(
    client: FlaskClient, headers: dict[str, str], admin: Account, body: dict[str, Any]
) -> None:
    response = client.patch(f"{USERS}/{admin.user.id}", json=body, headers=headers)

    assert response.status_code == 409
    assert error_code(response) == "RES_CONFLICT"


@pytest.mark.parametrize(
    "body",
    [{"roles": ["root"]}, {"roles": []}, {"disabled": "yes please"}, {"email": "x@example.com"}],
)
def test_invalid_admin_updates_are_refused(
    client: FlaskClient, headers: dict[str, str], make_user: Any, body: dict[str, Any]
) -> None:
    response = client.patch(f"{USERS}/{make_user().user.id}", json=body, headers=headers)

    assert response.status_code == 422
