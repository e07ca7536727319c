"""Fuzzing fixtures: the real app in-process, one caller per role, limits out of the way.

Every generated request runs inside the per-test transaction of tests/conftest.py, so
what the fuzzer creates (notes, users, API keys, config rows) is rolled back afterwards.
The default rate limit is raised so a 429 means a documented limit (login, register)
and not the fuzzer's own volume.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from typing import Final

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from app.auth.state import auth_state
from app.auth.users import create_user
from app.settings import Settings

ROLES: Final = ("anonymous", "user", "admin")


def max_examples() -> int:
    """Examples per operation: FUZZ_MAX_EXAMPLES, else a bound that keeps `make test` short."""
    return int(os.environ.get("FUZZ_MAX_EXAMPLES", "12"))


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """The shared test settings, with the default rate limit far above the fuzzer's volume."""
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=redis_url,
        log_json=True,
        log_level="WARNING",
        rate_limit_default_requests=10_000_000,
    )


def login(client: FlaskClient, session: Session, app: Flask, roles: tuple[str, ...]) -> str:
    """Create a user through the service, log in through the API; the Authorization value."""
    email = f"fuzz-{roles[0]}-{secrets.token_hex(4)}@example.com"
    password = secrets.token_urlsafe(18)
    create_user(session=session, auth=auth_state(), email=email, password=password, roles=roles)
    response = client.post("/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json
    return f"Bearer {response.json['data']['access_token']}"


@pytest.fixture
def headers_for(
    app: Flask, client: FlaskClient, session: Session
) -> Callable[[str], dict[str, str]]:
    """Headers of a caller with `role`: nobody, a user or an admin (each a real account)."""
    made: dict[str, dict[str, str]] = {"anonymous": {}}

    def factory(role: str) -> dict[str, str]:
        if role not in made:
            roles = ("user",) if role == "user" else ("admin", "user")
            made[role] = {"Authorization": login(client, session, app, roles)}
        return made[role]

    return factory
