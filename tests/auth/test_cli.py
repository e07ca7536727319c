"""`flask users create-admin` and `flask api-keys ...` (no default credentials)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func
from sqlmodel import Session, select

from app.auth.models.user import User
from tests.auth.conftest import Ledger, error_code, new_password, unique_email


def _invoke(app: Flask, *args: str, **kwargs: Any) -> Any:
    return app.test_cli_runner().invoke(args=list(args), **kwargs)


def _login(client: FlaskClient, email: str, password: str) -> Any:
    return client.post("/v1/auth/login", json={"email": email, "password": password})


def test_a_fresh_database_holds_no_account_at_all(session: Session) -> None:
    assert session.exec(select(func.count()).select_from(User)).one() == 0


def test_create_admin_reads_the_password_from_a_file(
    app: Flask, client: FlaskClient, tmp_path: Path, ledger: Ledger
) -> None:
    email, password = unique_email("admin"), new_password()
    ledger.add(password)
    secret = tmp_path / "password"
    secret.write_text(password + "\n", encoding="utf-8")

    result = _invoke(app, "users", "create-admin", "--email", email, "--password-file", str(secret))

    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["roles"] == ["admin"]
    assert password not in result.output
    tokens = _login(client, email, password).get_json()["data"]
    me = client.get("/v1/auth/me", headers={"Authorization": f"Bearer {tokens['access_token']}"})
    assert me.get_json()["data"]["roles"] == ["admin"]


def test_create_admin_reads_the_password_from_the_environment(
    app: Flask, client: FlaskClient, ledger: Ledger
) -> None:
    email, password = unique_email("admin"), new_password()
    ledger.add(password)

    result = _invoke(
        app, "users", "create-admin", "--email", email, env={"SAPI_ADMIN_PASSWORD": password}
    )

    assert result.exit_code == 0, result.output
    assert _login(client, email, password).status_code == 200


def test_create_admin_prompts_twice_without_echo(
    app: Flask, client: FlaskClient, ledger: Ledger
) -> None:
    email, password = unique_email("admin"), new_password()
    ledger.add(password)

    result = _invoke(
        app, "users", "create-admin", "--email", email, input=f"{password}\n{password}\n"
    )

    assert result.exit_code == 0, result.output
    assert password not in result.output
    assert _login(client, email, password).status_code == 200


@pytest.mark.parametrize(
    ("email", "password", "message"),
    [
        ("not-an-email", "pw-long-enough-and-random", "not a valid email"),
        ("ok@example.com", "short", "at least 12"),
    ],
)
def test_create_admin_refuses_bad_input(
    app: Flask, email: str, password: str, message: str
) -> None:
    result = _invoke(
        app, "users", "create-admin", "--email", email, env={"SAPI_ADMIN_PASSWORD": password}
    )

    assert result.exit_code != 0
    assert message in result.output


def test_create_admin_refuses_an_existing_email(app: Flask, make_user: Any) -> None:
    taken = make_user().email

    result = _invoke(
        app, "users", "create-admin", "--email", taken, env={"SAPI_ADMIN_PASSWORD": new_password()}
    )

    assert result.exit_code != 0
    assert "already exists" in result.output


def test_api_keys_list_prints_keys_without_the_secret(
    app: Flask, make_user: Any, make_key: Any
) -> None:
    owner = make_user()
    row, key = make_key(owner, ["ai:generate"])

    result = _invoke(app, "api-keys", "list", "--email", owner.email.upper())

    assert result.exit_code == 0, result.output
    (line,) = [json.loads(x) for x in result.output.splitlines()]
    assert line["id"] == str(row.id) and line["owner"] == owner.email
    assert line["prefix"] == key[:13]
    assert key not in result.output


def test_api_keys_revoke_stops_the_key(
    app: Flask, client: FlaskClient, make_user: Any, make_key: Any
) -> None:
    owner = make_user()
    row, key = make_key(owner, ["profile:read"])

    result = _invoke(app, "api-keys", "revoke", str(row.id))

    assert result.exit_code == 0, result.output
    assert error_code(client.get("/v1/auth/me", headers={"X-API-Key": key})) == (
        "AUTH_TOKEN_REVOKED"
    )
    listed = _invoke(app, "api-keys", "list", "--all").output
    assert json.loads(listed.splitlines()[0])["revoked"] is True
    assert _invoke(app, "api-keys", "list").output == ""


def test_api_keys_revoke_of_an_unknown_id_fails(app: Flask) -> None:
    result = _invoke(app, "api-keys", "revoke", "00000000-0000-0000-0000-000000000000")

    assert result.exit_code != 0
    assert "no API key" in result.output


def test_api_keys_flush_last_used_writes_buffered_times(
    app: Flask, client: FlaskClient, make_user: Any, make_key: Any, session: Session
) -> None:
    owner = make_user()
    row, key = make_key(owner, ["profile:read"])
    client.get("/v1/auth/me", headers={"X-API-Key": key})

    result = _invoke(app, "api-keys", "flush-last-used")

    assert json.loads(result.output) == {"flushed": 1}
    session.refresh(row)
    assert row.last_used_at is not None
