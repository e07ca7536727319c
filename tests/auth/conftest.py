"""Auth test helpers: user factories, token helpers and a suite-wide secret-leak scanner.

Every test in tests/auth runs under `no_secret_leaks`: the test client records each
password it sends and each token or key the API returns, and after the test the
captured log lines, every other response, every database row and every Redis key and
value are searched for them. A hit fails the test.
"""

from __future__ import annotations

import itertools
import json
import logging
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection, text
from sqlmodel import Session
from werkzeug.test import TestResponse

from app.auth import api_keys as key_service
from app.auth import sessions as auth_service
from app.auth import users as user_service
from app.auth.models.user import User
from app.auth.state import AuthState, auth_state
from app.core import db
from app.core.observability.logging import JsonFormatter
from app.factory import create_app
from app.settings import Settings

_counter = itertools.count()
TOKEN_FIELDS = ("access_token", "refresh_token", "key")


@dataclass
class Ledger:
    """Secrets seen in this test and where they may legitimately appear."""

    # secret -> the responses that issued it (a refresh replay inside the grace window
    # issues the same successor again, app/auth/sessions.py)
    secrets: dict[str, set[int]] = field(default_factory=dict)
    responses: list[str] = field(default_factory=list)
    logs: list[str] = field(default_factory=list)

    def add(self, secret: str, issued_by: int | None = None) -> None:
        """Remember a secret; `issued_by` is the index of a response allowed to carry it."""
        if not secret:
            return
        parts = [secret]
        if secret.count(".") == 2:  # a JWT: its signature alone is secret too
            parts.append(secret.rsplit(".", 1)[1])
        for part in parts:
            issuers = self.secrets.setdefault(part, set())
            if issued_by is not None:
                issuers.add(issued_by)

    def record_request(self, body: Any) -> None:
        """Passwords sent in a JSON body."""
        if isinstance(body, dict):
            for name in ("password", "refresh_token"):
                value = body.get(name)
                if isinstance(value, str) and len(value) >= 8:
                    self.add(value)

    def record_response(self, response: TestResponse) -> None:
        """Keep the body; tokens and keys in `data` may appear only here."""
        index = len(self.responses)
        body = response.get_data(as_text=True)
        self.responses.append(body)
        try:
            data = json.loads(body).get("data")
        except (ValueError, AttributeError):
            return
        if isinstance(data, dict):
            for name in TOKEN_FIELDS:
                value = data.get(name)
                if isinstance(value, str):
                    self.add(value, issued_by=index)


class RecordingClient(FlaskClient):
    """A test client feeding every request and response to the test's ledger."""

    ledger: Ledger | None = None

    def open(self, *args: Any, **kwargs: Any) -> TestResponse:  # type: ignore[override]
        """Send the request, recording passwords out and tokens in."""
        if self.ledger is not None:
            self.ledger.record_request(kwargs.get("json"))
        response = super().open(*args, **kwargs)
        if self.ledger is not None:
            self.ledger.record_response(response)
        return response


class _Capture(logging.Handler):
    def __init__(self, ledger: Ledger) -> None:
        super().__init__(logging.DEBUG)
        self.ledger = ledger
        self.setFormatter(JsonFormatter())

    def emit(self, record: logging.LogRecord) -> None:
        self.ledger.logs.append(self.format(record))


def _database_text(connection: Connection) -> list[tuple[str, str]]:
    tables = connection.execute(
        text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    ).scalars()
    rows: list[tuple[str, str]] = []
    for table in tables:
        query = text(f'SELECT row_to_json(t)::text FROM "{table}" t')
        rows.extend((table, r) for r in connection.execute(query).scalars())
    return rows


def _redis_text(client: redis.Redis) -> list[str]:
    out: list[str] = []
    for key in client.scan_iter(count=500):
        out.append(key.decode(errors="replace"))
        kind = client.type(key).decode()
        if kind == "string":
            out.append(str(client.get(key)))
        elif kind == "hash":
            out.append(str(client.hgetall(key)))
        elif kind in ("list", "set", "zset"):
            out.append(str(client.dump(key)))
    return out


def leaks(ledger: Ledger, connection: Connection, client: redis.Redis) -> list[str]:
    """Every place a recorded secret shows up in clear where it must not."""
    found: list[str] = []
    db_rows = _database_text(connection)
    redis_text = _redis_text(client)
    for secret, issued_by in ledger.secrets.items():
        label = secret[:6] + "..."
        found += [f"{label} in log line" for line in ledger.logs if secret in line]
        found += [
            f"{label} in response #{i}"
            for i, body in enumerate(ledger.responses)
            if secret in body and i not in issued_by
        ]
        found += [f"{label} in table {table}" for table, row in db_rows if secret in row]
        found += [f"{label} in Redis" for value in redis_text if secret in value]
    return found


@pytest.fixture
def ledger() -> Ledger:
    """The secrets this test created."""
    return Ledger()


@pytest.fixture(autouse=True)
def no_secret_leaks(
    app: Flask, ledger: Ledger, connection: Connection, redis_url: str
) -> Iterator[Ledger]:
    """Record secrets during the test; fail it if any appears where it must not."""
    app.test_client_class = RecordingClient
    RecordingClient.ledger = ledger
    handler = _Capture(ledger)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield ledger
    finally:
        root.removeHandler(handler)
        RecordingClient.ledger = None
    client = redis.Redis.from_url(redis_url)
    try:
        found = leaks(ledger, connection, client)
    finally:
        client.close()
    assert not found, f"secrets in clear: {found}"


@pytest.fixture
def auth(app: Flask) -> AuthState:
    """The app's auth state (keys, hasher, Redis)."""
    return auth_state()


def unique_email(stem: str = "user") -> str:
    """An email no other test uses."""
    return f"{stem}-{next(_counter)}-{secrets.token_hex(3)}@example.com"


def new_password() -> str:
    """A random password that passes the policy."""
    return "pw-" + secrets.token_urlsafe(18)


SHARED_PASSWORD = new_password()
_SHARED_HASH: list[str] = []


def _shared_hash(auth: AuthState) -> str:
    if not _SHARED_HASH:
        _SHARED_HASH.append(auth.passwords.hash(SHARED_PASSWORD))
    return _SHARED_HASH[0]


@dataclass
class Account:
    """A user created for a test, with its password in clear."""

    user: User
    password: str

    @property
    def email(self) -> str:
        """The account's email."""
        return self.user.email


@pytest.fixture
def make_user(session: Session, auth: AuthState, ledger: Ledger) -> Any:
    """Factory: `make_user(roles=("user",), email=None, password=None) -> Account`."""

    def factory(
        roles: tuple[str, ...] = ("user",), email: str | None = None, password: str | None = None
    ) -> Account:
        address = email or unique_email(roles[0] if roles else "user")
        if password is None:
            # Most tests never log in with a password: share one hash per process
            # instead of paying an argon2id hash (~50 ms) per user.
            ledger.add(SHARED_PASSWORD)
            user = User(email=address, password_hash=_shared_hash(auth), roles=list(roles))
            session.add(user)
            session.commit()
            return Account(user=user, password=SHARED_PASSWORD)
        ledger.add(password)
        user = user_service.create_user(
            session=session, auth=auth, email=address, password=password, roles=roles
        )
        return Account(user=user, password=password)

    return factory


@pytest.fixture
def issue(session: Session, auth: AuthState, ledger: Ledger) -> Any:
    """Factory: a fresh session's tokens for an account, without the password round trip."""

    def factory(account: Account) -> auth_service.IssuedTokens:
        tokens = auth_service.start_session(
            session=session, auth=auth, user=account.user, ip="127.0.0.1", user_agent="pytest"
        )
        ledger.add(tokens.access_token)
        ledger.add(tokens.refresh_token)
        return tokens

    return factory


@pytest.fixture
def make_key(session: Session, auth: AuthState, ledger: Ledger) -> Any:
    """Factory: `make_key(account, scopes, expires_in_days=None) -> (row, key)`."""

    def factory(
        account: Account, scopes: list[str], expires_in_days: int | None = None
    ) -> tuple[Any, str]:
        row, key = key_service.create_api_key(
            session=session,
            auth=auth,
            user_id=account.user.id,
            name=f"key-{next(_counter)}",
            scopes=scopes,
            expires_in_days=expires_in_days,
        )
        ledger.add(key)
        return row, key

    return factory


def bearer(token: str) -> dict[str, str]:
    """An Authorization header carrying `token`."""
    return {"Authorization": f"Bearer {token}"}


def error_code(response: TestResponse) -> str | None:
    """The envelope's error code."""
    body = response.get_json()
    return body["error"]["code"] if body and body.get("error") else None


def build_app(settings: Settings, connection: Connection) -> Flask:
    """A second app on the test's transaction (e.g. after a key rotation)."""
    application = create_app(settings)
    application.config["TESTING"] = True
    application.extensions[db.SESSION_FACTORY] = lambda: Session(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )
    # The autocommit session is the request's session: the test's rows exist only in its
    # transaction (tests/core/test_db_path.py covers the real autocommit session).
    application.extensions[db.AUTOCOMMIT_FACTORY] = db.get_session
    application.test_client_class = RecordingClient
    return application
