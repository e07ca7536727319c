"""Brute-force protection on login and register, per client IP (Redis counters)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from app.settings import Settings
from tests.auth.conftest import error_code, new_password, unique_email
from tests.auth.test_register_login import _login, _register


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small per-IP limits so the IP throttle is reachable in a test."""
    return settings.model_copy(
        update={
            "login_max_failures_per_ip": 6,
            "register_max_per_ip": 4,
            "register_max_per_account": 3,
        }
    )


def test_failed_logins_from_one_ip_across_accounts_are_throttled(
    client: FlaskClient, make_user: Any
) -> None:
    account = make_user()
    for _ in range(6):
        assert _login(client, unique_email(), new_password()).status_code == 401

    blocked = _login(client, account.email, account.password)

    assert blocked.status_code == 429
    assert error_code(blocked) == "RATE_LIMIT_EXCEEDED"
    assert "Retry-After" in blocked.headers
    other_ip = _login(
        client, account.email, account.password, environ_base={"REMOTE_ADDR": "10.1.2.3"}
    )
    assert other_ip.status_code == 200


def test_registrations_from_one_ip_are_throttled(client: FlaskClient) -> None:
    for _ in range(4):
        assert _register(client, unique_email(), new_password()).status_code == 202

    blocked = _register(client, unique_email(), new_password())

    assert blocked.status_code == 429
    assert int(blocked.headers["Retry-After"]) > 0


def test_registrations_of_one_email_are_throttled_across_ips(client: FlaskClient) -> None:
    email = unique_email()
    for n in range(3):
        ip = {"REMOTE_ADDR": f"10.0.0.{n}"}
        assert (
            client.post(
                "/v1/auth/register",
                json={"email": email, "password": new_password()},
                environ_base=ip,
            ).status_code
            == 202
        )

    blocked = client.post(
        "/v1/auth/register",
        json={"email": email, "password": new_password()},
        environ_base={"REMOTE_ADDR": "10.0.0.99"},
    )

    assert blocked.status_code == 429
