"""The per-IP login and register throttles key on the client bucket, not on what it claims.

Every attempt uses a new email, so only the per-IP counter can refuse it.
"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.settings import Settings
from tests.auth.conftest import error_code, new_password, unique_email

LOGINS_PER_IP = 4
REGISTRATIONS_PER_IP = 3


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Per-IP limits small enough to reach; TRUSTED_PROXIES stays at its default, 0."""
    return settings.model_copy(
        update={
            "login_max_failures_per_ip": LOGINS_PER_IP,
            "register_max_per_ip": REGISTRATIONS_PER_IP,
        }
    )


def login(client: FlaskClient, addr: str, forwarded: str | None = None) -> TestResponse:
    """A failed login (unknown account) from TCP peer `addr`."""
    return client.post(
        "/v1/auth/login",
        json={"email": unique_email(), "password": new_password()},
        headers={"X-Forwarded-For": forwarded} if forwarded else {},
        environ_base={"REMOTE_ADDR": addr},
    )


def register(client: FlaskClient, addr: str) -> TestResponse:
    """A registration of a new email from TCP peer `addr`."""
    return client.post(
        "/v1/auth/register",
        json={"email": unique_email(), "password": new_password()},
        environ_base={"REMOTE_ADDR": addr},
    )


def test_a_spoofed_forwarded_for_does_not_escape_the_login_ip_throttle(
    settings: Settings, client: FlaskClient
) -> None:
    assert settings.trusted_proxies == 0
    statuses = [
        login(client, "198.51.100.20", forwarded=f"10.7.0.{n}").status_code
        for n in range(LOGINS_PER_IP)
    ]
    assert statuses == [401] * LOGINS_PER_IP

    blocked = login(client, "198.51.100.20", forwarded="10.7.0.200")

    assert blocked.status_code == 429
    assert error_code(blocked) == "RATE_LIMIT_EXCEEDED"


def test_failed_logins_from_one_ipv6_64_share_the_ip_throttle(client: FlaskClient) -> None:
    statuses = [login(client, f"2001:db8:77:1::{n}").status_code for n in range(LOGINS_PER_IP)]
    assert statuses == [401] * LOGINS_PER_IP

    assert login(client, "2001:db8:77:1:abcd::1").status_code == 429
    assert login(client, "2001:db8:77:2::1").status_code == 401  # another /64


def test_an_ipv4_mapped_login_counts_as_its_ipv4_address(client: FlaskClient) -> None:
    for _ in range(LOGINS_PER_IP):
        assert login(client, "::ffff:192.0.2.30").status_code == 401

    assert login(client, "192.0.2.30").status_code == 429


def test_registrations_from_one_ipv6_64_share_the_ip_throttle(client: FlaskClient) -> None:
    statuses = [
        register(client, f"2001:db8:78:1::{n}").status_code for n in range(REGISTRATIONS_PER_IP)
    ]
    assert statuses == [202] * REGISTRATIONS_PER_IP

    assert register(client, "2001:db8:78:1:ffff::9").status_code == 429
    assert register(client, "2001:db8:78:9::1").status_code == 202
