"""Refresh rotation, the reuse grace window, logout and session management."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, col, select

from app.auth.models.session import RefreshToken
from tests.auth.conftest import Account, Ledger, bearer, error_code
from tests.auth.test_jwt_attacks import _age_used_tokens

REFRESH = "/v1/auth/refresh"
SESSIONS = "/v1/auth/sessions"


@pytest.fixture
def account(make_user: Any) -> Account:
    """A plain user."""
    acct: Account = make_user()
    return acct


def _refresh(client: FlaskClient, token: str) -> Any:
    return client.post(REFRESH, json={"refresh_token": token})


def _login(client: FlaskClient, account: Account, agent: str = "pytest") -> dict[str, Any]:
    response = client.post(
        "/v1/auth/login",
        json={"email": account.email, "password": account.password},
        headers={"User-Agent": agent},
    )
    assert response.status_code == 200
    data: dict[str, Any] = response.get_json()["data"]
    return data


def test_refresh_rotates_the_refresh_token_and_issues_a_working_access_token(
    client: FlaskClient, account: Account, session: Session
) -> None:
    first = _login(client, account)

    response = _refresh(client, first["refresh_token"])

    assert response.status_code == 200
    second = response.get_json()["data"]
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["session_id"] == first["session_id"]
    assert client.get("/v1/auth/me", headers=bearer(second["access_token"])).status_code == 200
    tokens = session.exec(select(RefreshToken)).all()
    assert len(tokens) == 2
    assert sum(t.used_at is not None for t in tokens) == 1


def test_a_replay_within_the_grace_window_gets_the_same_successor_not_a_fork(
    client: FlaskClient, account: Account, session: Session
) -> None:
    first = _login(client, account)

    a = _refresh(client, first["refresh_token"])
    b = _refresh(client, first["refresh_token"])  # a second tab raced the first

    assert a.status_code == b.status_code == 200
    one, two = a.get_json()["data"], b.get_json()["data"]
    assert one["refresh_token"] == two["refresh_token"]
    assert one["session_id"] == two["session_id"] == first["session_id"]
    assert one["access_token"] != two["access_token"]
    assert client.get("/v1/auth/me", headers=bearer(two["access_token"])).status_code == 200
    live = session.exec(select(RefreshToken).where(col(RefreshToken.used_at).is_(None))).all()
    assert len(live) == 1  # one chain: the replay added no sibling
    assert _refresh(client, one["refresh_token"]).status_code == 200


def test_reuse_is_logged_as_a_warning_without_the_token(
    client: FlaskClient, account: Account, caplog: pytest.LogCaptureFixture, settings: Any
) -> None:
    first = _login(client, account)
    _refresh(client, first["refresh_token"])
    _age_used_tokens(client, settings.refresh_reuse_grace_seconds + 1)

    with caplog.at_level(logging.WARNING, logger="structured_api.auth"):
        assert error_code(_refresh(client, first["refresh_token"])) == "AUTH_TOKEN_REUSED"

    warnings = [r for r in caplog.records if "reuse" in r.getMessage()]
    assert warnings and warnings[0].session_id == first["session_id"]  # type: ignore[attr-defined]


def test_an_unknown_refresh_token_is_invalid(client: FlaskClient, ledger: Ledger) -> None:
    ledger.add("srt_doesnotexist-at-all")
    response = _refresh(client, "srt_doesnotexist-at-all")

    assert response.status_code == 401
    assert error_code(response) == "AUTH_INVALID_TOKEN"


def test_an_expired_refresh_token_is_refused_as_expired(
    client: FlaskClient, account: Account, session: Session
) -> None:
    first = _login(client, account)
    from sqlalchemy import text

    session.execute(text("UPDATE auth_refresh_tokens SET expires_at = now() - interval '1 s'"))
    session.commit()

    response = _refresh(client, first["refresh_token"])

    assert response.status_code == 401
    assert error_code(response) == "AUTH_TOKEN_EXPIRED"


def test_logout_ends_the_session_but_not_the_others(client: FlaskClient, account: Account) -> None:
    laptop, phone = _login(client, account, "laptop"), _login(client, account, "phone")

    assert client.post("/v1/auth/logout", headers=bearer(laptop["access_token"])).status_code == 200

    assert error_code(_refresh(client, laptop["refresh_token"])) == "AUTH_TOKEN_REVOKED"
    assert _refresh(client, phone["refresh_token"]).status_code == 200
    assert client.get("/v1/auth/me", headers=bearer(phone["access_token"])).status_code == 200


def test_sessions_list_the_callers_logins_and_mark_the_current_one(
    client: FlaskClient, account: Account
) -> None:
    laptop, phone = _login(client, account, "laptop/1.0"), _login(client, account, "phone/2.0")

    listed = client.get(SESSIONS, headers=bearer(phone["access_token"])).get_json()["data"]

    assert listed["count"] == 2
    by_agent = {s["user_agent"]: s for s in listed["data"]}
    assert by_agent["phone/2.0"]["current"] is True
    assert by_agent["laptop/1.0"]["current"] is False
    assert by_agent["laptop/1.0"]["id"] == laptop["session_id"]
    assert by_agent["laptop/1.0"]["ip"] == "127.0.0.1"
    assert listed["data"][0]["user_agent"] == "phone/2.0"  # most recently used first


def test_ending_a_session_stops_its_refresh_and_access_tokens(
    client: FlaskClient, account: Account
) -> None:
    laptop, phone = _login(client, account, "laptop"), _login(client, account, "phone")

    ended = client.delete(
        f"{SESSIONS}/{laptop['session_id']}", headers=bearer(phone["access_token"])
    )

    assert ended.status_code == 200
    assert error_code(_refresh(client, laptop["refresh_token"])) == "AUTH_TOKEN_REVOKED"
    gone = client.get("/v1/auth/me", headers=bearer(laptop["access_token"]))
    assert gone.status_code == 401 and error_code(gone) == "AUTH_TOKEN_REVOKED"
    listed = client.get(SESSIONS, headers=bearer(phone["access_token"])).get_json()["data"]
    assert [s["id"] for s in listed["data"]] == [phone["session_id"]]


@pytest.mark.parametrize("target", ["ended", "unknown"])
def test_ending_an_ended_or_unknown_session_is_not_found(
    client: FlaskClient, account: Account, target: str
) -> None:
    laptop, phone = _login(client, account), _login(client, account)
    headers = bearer(phone["access_token"])
    session_id = laptop["session_id"] if target == "ended" else str(uuid.uuid4())
    if target == "ended":
        client.delete(f"{SESSIONS}/{session_id}", headers=headers)

    response = client.delete(f"{SESSIONS}/{session_id}", headers=headers)

    assert response.status_code == 404


def test_a_role_change_refuses_old_access_tokens_and_refresh_carries_new_roles(
    client: FlaskClient, account: Account, make_user: Any, issue: Any
) -> None:
    tokens = _login(client, account)
    admin = issue(make_user(roles=("admin",))).access_token

    client.patch(
        f"/v1/admin/users/{account.user.id}", json={"roles": ["readonly"]}, headers=bearer(admin)
    )

    stale = client.get("/v1/auth/me", headers=bearer(tokens["access_token"]))
    assert error_code(stale) == "AUTH_TOKEN_REVOKED"
    fresh = _refresh(client, tokens["refresh_token"]).get_json()["data"]
    me = client.get("/v1/auth/me", headers=bearer(fresh["access_token"]))
    assert me.get_json()["data"]["roles"] == ["readonly"]
