"""Register and login: policy, no enumeration (answers and timing), throttling, rehash."""

from __future__ import annotations

import statistics
import time
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session, select

from app.auth.models.user import User
from app.auth.passwords import Passwords
from app.auth.state import AuthState
from app.settings import Settings
from tests.auth.conftest import bearer, error_code, new_password, unique_email


def _register(client: FlaskClient, email: str, password: str) -> Any:
    return client.post("/v1/auth/register", json={"email": email, "password": password})


def _login(client: FlaskClient, email: str, password: str, **kw: Any) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password}, **kw)


def test_register_then_login_returns_a_token_pair(client: FlaskClient) -> None:
    email, password = unique_email(), new_password()
    assert _register(client, email, password).status_code == 202

    response = _login(client, email, password)

    assert response.status_code == 200
    data = response.get_json()["data"]
    assert data["token_type"] == "Bearer"
    assert data["expires_in"] == 900
    assert data["access_token"].count(".") == 2
    assert data["refresh_token"].startswith("srt_")
    assert response.headers["Cache-Control"] == "no-store"
    me = client.get("/v1/auth/me", headers=bearer(data["access_token"]))
    assert me.get_json()["data"]["email"] == email
    assert me.get_json()["data"]["roles"] == ["user"]


def test_register_normalises_email_so_case_variants_are_one_account(
    client: FlaskClient, session: Session
) -> None:
    email, password = unique_email(), new_password()
    _register(client, "  " + email.upper() + " ", password)
    _register(client, email, new_password())

    rows = session.exec(select(User).where(User.email == email)).all()

    assert len(rows) == 1
    assert _login(client, email.upper(), password).status_code == 200


def test_register_answers_the_same_whether_or_not_the_email_exists(
    client: FlaskClient, make_user: Any
) -> None:
    taken = make_user().email
    fresh = unique_email()

    a = _register(client, taken, new_password())
    b = _register(client, fresh, new_password())

    assert a.status_code == b.status_code == 202
    body_a, body_b = a.get_json(), b.get_json()
    for body in (body_a, body_b):
        body["meta"]["request_id"] = None
    assert body_a == body_b


def test_login_answers_the_same_for_a_wrong_password_and_an_unknown_email(
    client: FlaskClient, make_user: Any
) -> None:
    account = make_user()

    wrong = _login(client, account.email, new_password())
    unknown = _login(client, unique_email(), new_password())

    assert wrong.status_code == unknown.status_code == 401
    assert error_code(wrong) == error_code(unknown) == "AUTH_INVALID_CREDENTIALS"
    assert wrong.get_json()["message"] == unknown.get_json()["message"]


def _median_seconds(call: Any, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def test_login_takes_comparable_time_for_unknown_and_known_emails(
    client: FlaskClient, make_user: Any
) -> None:
    account = make_user()
    known = _median_seconds(lambda: _login(client, account.email, new_password()))
    unknown = _median_seconds(lambda: _login(client, unique_email(), new_password()))

    # Both run one argon2id verification; without the dummy hash `unknown` is ~100x faster.
    assert 0.5 < unknown / known < 2.0, (known, unknown)


def test_register_takes_comparable_time_for_taken_and_free_emails(
    client: FlaskClient, make_user: Any
) -> None:
    taken = make_user().email
    free = _median_seconds(lambda: _register(client, unique_email(), new_password()), runs=4)
    used = _median_seconds(lambda: _register(client, taken, new_password()), runs=4)

    assert 0.5 < used / free < 2.0, (free, used)


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short-pw", "at least 12"),
        ("x" * 129, "at most 128"),
        ("password1234", "too common"),
        ("abababababababab", "too common"),
    ],
)
def test_register_refuses_weak_passwords_without_echoing_them(
    client: FlaskClient, password: str, reason: str
) -> None:
    response = _register(client, unique_email(), password)

    assert response.status_code == 422
    assert error_code(response) == "VAL_INVALID_FORMAT"
    assert reason in response.get_data(as_text=True)
    assert password not in response.get_data(as_text=True)


def test_register_refuses_a_password_containing_the_email(client: FlaskClient) -> None:
    response = _register(client, "mallory@example.com", "MALLORY-is-my-name-1")

    assert response.status_code == 422
    assert "must not contain the email" in response.get_data(as_text=True)


def test_register_refuses_an_invalid_email(client: FlaskClient) -> None:
    response = _register(client, "not-an-email", new_password())

    assert response.status_code == 422
    assert response.get_json()["error"]["errors"][0]["field"] == "email"


def test_login_of_a_disabled_account_is_refused(
    client: FlaskClient, make_user: Any, session: Session
) -> None:
    from app.core.models import utcnow

    account = make_user()
    account.user.disabled_at = utcnow()
    session.add(account.user)
    session.commit()

    response = _login(client, account.email, account.password)

    assert response.status_code == 403
    assert error_code(response) == "AUTH_ACCOUNT_DISABLED"


def test_login_rehashes_a_password_hashed_with_old_parameters(
    client: FlaskClient, make_user: Any, session: Session, auth: AuthState
) -> None:
    account = make_user()
    weak = Passwords(memory_kib=8192, time_cost=1, parallelism=1)
    account.user.password_hash = weak.hash(account.password)
    session.add(account.user)
    session.commit()

    assert _login(client, account.email, account.password).status_code == 200

    session.refresh(account.user)
    assert account.user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert auth.passwords.verify(account.user.password_hash, account.password)


def test_passwords_use_owasp_argon2id_parameters(make_user: Any) -> None:
    account = make_user()

    assert account.user.password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")


def test_repeated_failed_logins_for_one_account_from_one_ip_are_throttled_with_retry_after(
    client: FlaskClient, make_user: Any, settings: Settings
) -> None:
    account = make_user()
    for _ in range(settings.login_max_failures_per_account_ip):
        assert _login(client, account.email, new_password()).status_code == 401

    blocked = _login(client, account.email, account.password)

    assert blocked.status_code == 429
    assert error_code(blocked) == "RATE_LIMIT_EXCEEDED"
    assert 0 < int(blocked.headers["Retry-After"]) <= settings.login_throttle_window_seconds


def test_throttling_an_unknown_email_looks_the_same_as_a_known_one(
    client: FlaskClient, settings: Settings
) -> None:
    email = unique_email()
    for _ in range(settings.login_max_failures_per_account_ip):
        _login(client, email, new_password())

    assert _login(client, email, new_password()).status_code == 429


def test_a_successful_login_clears_the_failure_count_of_its_account_and_ip(
    client: FlaskClient, make_user: Any, settings: Settings
) -> None:
    account = make_user()
    for _ in range(settings.login_max_failures_per_account_ip - 1):
        _login(client, account.email, new_password())
    assert _login(client, account.email, account.password).status_code == 200

    for _ in range(settings.login_max_failures_per_account_ip):
        assert _login(client, account.email, new_password()).status_code == 401
    assert _login(client, account.email, new_password()).status_code == 429
