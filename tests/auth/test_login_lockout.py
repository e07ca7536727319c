"""The login throttle slows guessing without letting an attacker lock the owner out.

Three counters (app/auth/throttle.py): per (account, IP) strict, per account
(all IPs) higher and short, per IP (all accounts). Attempts are counted before the
password is checked, and a refused attempt counts nowhere. Parallel guesses against a
real gunicorn are in test_live_auth_races.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.auth.state import AuthState
from app.settings import Settings
from tests.auth.conftest import Account, error_code, new_password, unique_email

PAIR, ACCOUNT, ACCOUNT_WINDOW, PER_IP = 3, 7, 2, 12


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """Small limits; the per-account window is 2 s so its end is reachable in a test."""
    return settings.model_copy(
        update={
            "login_max_failures_per_account_ip": PAIR,
            "login_max_failures_per_account": ACCOUNT,
            "login_account_window_seconds": ACCOUNT_WINDOW,
            "login_max_failures_per_ip": PER_IP,
        }
    )


def _login(client: FlaskClient, email: str, password: str, ip: str) -> Any:
    return client.post(
        "/v1/auth/login",
        json={"email": email, "password": password},
        environ_base={"REMOTE_ADDR": ip},
    )


@pytest.fixture
def counted(auth: AuthState, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the argon2 verifications the app runs (the real ones still run).

    `Passwords.burn` (unknown accounts) verifies against a dummy hash through `verify`.
    """
    calls: list[int] = []
    verify = auth.passwords.verify

    def counting_verify(stored: str, password: str) -> bool:
        calls.append(1)
        return verify(stored, password)

    monkeypatch.setattr(auth.passwords, "verify", counting_verify)
    return calls


def test_hammering_from_one_ip_does_not_lock_the_owner_out_from_another(
    client: FlaskClient, make_user: Any, counted: list[int]
) -> None:
    owner: Account = make_user()
    answers = [_login(client, owner.email, new_password(), "10.6.6.6") for _ in range(20)]

    assert [r.status_code for r in answers] == [401] * PAIR + [429] * (20 - PAIR)
    assert len(counted) == PAIR  # refused attempts cost no password check
    assert _login(client, owner.email, owner.password, "10.1.1.1").status_code == 200
    # The owner's success does not reset the attacker's pair.
    assert _login(client, owner.email, owner.password, "10.6.6.6").status_code == 429


def test_many_ips_lock_an_account_for_at_most_the_account_window(
    client: FlaskClient, make_user: Any
) -> None:
    owner: Account = make_user()
    attackers = [f"10.7.0.{n}" for n in range(4)]
    for ip in attackers[:2]:
        for _ in range(PAIR):
            assert _login(client, owner.email, new_password(), ip).status_code == 401
    assert _login(client, owner.email, new_password(), attackers[2]).status_code == 401

    locked = _login(client, owner.email, owner.password, "10.1.1.1")
    assert locked.status_code == 429  # ACCOUNT failures from 3 IPs: the documented bound
    assert error_code(locked) == "RATE_LIMIT_EXCEEDED"
    assert 0 < int(locked.headers["Retry-After"]) <= ACCOUNT_WINDOW
    time.sleep(ACCOUNT_WINDOW + 0.2)

    assert _login(client, owner.email, owner.password, "10.1.1.1").status_code == 200
    for ip in attackers[:2]:  # their pairs stay blocked for the long window
        assert _login(client, owner.email, new_password(), ip).status_code == 429


def test_spraying_many_accounts_from_one_ip_is_limited(
    client: FlaskClient, make_user: Any, counted: list[int]
) -> None:
    owner: Account = make_user()
    sprayed = [
        _login(client, unique_email(), new_password(), "10.8.8.8") for _ in range(PER_IP + 5)
    ]

    assert [r.status_code for r in sprayed] == [401] * PER_IP + [429] * 5
    assert len(counted) == PER_IP
    assert _login(client, owner.email, owner.password, "10.8.8.8").status_code == 429
    assert _login(client, owner.email, owner.password, "10.9.9.9").status_code == 200


def test_a_successful_login_refunds_its_attempt_on_the_shared_counters(
    client: FlaskClient, make_user: Any
) -> None:
    accounts: list[Account] = [make_user() for _ in range(PER_IP + 2)]
    for account in accounts:  # more successes from one IP than its failure limit
        assert _login(client, account.email, account.password, "10.5.5.5").status_code == 200
