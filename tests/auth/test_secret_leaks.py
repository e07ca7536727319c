"""No password, token or key in clear in logs, other responses, database rows or Redis.

Every test in this directory is scanned after it runs (`no_secret_leaks` in
conftest.py). This module adds one scenario touching every path that handles a
secret, asserts the scan directly, and proves the scanner finds planted leaks.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import redis
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Connection

from app.auth import api_keys as key_service
from app.auth.state import AuthState
from tests.auth.conftest import Ledger, bearer, leaks, new_password, unique_email


def _scenario(app: Flask, client: FlaskClient, tmp_path: Path, make_user: Any, issue: Any) -> None:
    email, password = unique_email(), new_password()
    client.post("/v1/auth/register", json={"email": email, "password": password})
    client.post("/v1/auth/register", json={"email": email, "password": new_password()})
    client.post("/v1/auth/register", json={"email": unique_email(), "password": "short"})
    client.post("/v1/auth/login", json={"email": email, "password": new_password()})
    client.post("/v1/auth/login", json={"email": unique_email(), "password": password})
    first = client.post("/v1/auth/login", json={"email": email, "password": password})
    tokens = first.get_json()["data"]
    second = client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})
    rotated = second.get_json()["data"]
    headers = bearer(rotated["access_token"])
    client.get("/v1/auth/me", headers=headers)
    created = client.post(
        "/v1/auth/api-keys", json={"name": "ci", "scopes": ["profile:read"]}, headers=headers
    ).get_json()["data"]
    for header in ({"X-API-Key": created["key"]}, {"Authorization": f"ApiKey {created['key']}"}):
        client.get("/v1/auth/me", headers=header)
    client.get("/v1/auth/api-keys", headers={"X-API-Key": created["key"]})  # 403, logged
    client.get("/v1/auth/me", headers={"X-API-Key": created["key"][:-1] + "x"})
    client.get("/v1/auth/me", headers=bearer(rotated["refresh_token"]))
    client.get("/v1/auth/api-keys", headers=headers)
    client.get("/v1/auth/sessions", headers=headers)
    client.delete(f"/v1/auth/api-keys/{created['id']}", headers=headers)
    client.get("/v1/auth/me", headers={"X-API-Key": created["key"]})

    admin_email, admin_password = unique_email("admin"), new_password()
    secret = tmp_path / "pw"
    secret.write_text(admin_password, encoding="utf-8")
    app.test_cli_runner().invoke(
        args=["users", "create-admin", "--email", admin_email, "--password-file", str(secret)]
    )
    client.post("/v1/auth/login", json={"email": admin_email, "password": admin_password})
    victim = make_user()
    admin_headers = bearer(issue(make_user(roles=("admin",))).access_token)
    client.patch(
        f"/v1/admin/users/{victim.user.id}", json={"disabled": True}, headers=admin_headers
    )
    client.post("/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]})  # reuse
    client.post("/v1/auth/logout", headers=headers)
    client.get("/v1/auth/me", headers=headers)
    app.test_cli_runner().invoke(args=["api-keys", "list", "--all"])
    app.test_cli_runner().invoke(args=["api-keys", "flush-last-used"])


def test_a_full_auth_scenario_leaves_no_secret_in_clear(
    app: Flask,
    client: FlaskClient,
    tmp_path: Path,
    make_user: Any,
    issue: Any,
    ledger: Ledger,
    connection: Connection,
    redis_url: str,
) -> None:
    ledger.add(tmp_path.name)  # sanity: something that is nowhere must not be found
    with app.app_context():
        _scenario(app, client, tmp_path, make_user, issue)

    kinds = {
        "password": [s for s in ledger.secrets if s.startswith("pw-")],
        "refresh": [s for s in ledger.secrets if s.startswith("srt_")],
        "access": [s for s in ledger.secrets if s.count(".") == 2],
        "api_key": [s for s in ledger.secrets if s.startswith("sapi_")],
    }
    assert {k: len(v) >= 1 for k, v in kinds.items()} == dict.fromkeys(kinds, True), kinds
    assert len(kinds["password"]) >= 4 and len(kinds["refresh"]) >= 2
    assert len(ledger.logs) > 20  # the scan had material: access log, auth events
    client_redis = redis.Redis.from_url(redis_url)
    try:
        assert leaks(ledger, connection, client_redis) == []
    finally:
        client_redis.close()


def test_the_scanner_finds_a_token_planted_in_a_log_line_redis_and_a_response(
    ledger: Ledger, connection: Connection, auth: AuthState, redis_url: str
) -> None:
    token = "srt_planted-" + new_password()
    ledger.add(token)
    logging.getLogger("structured_api.test").warning("leaking %s", token)
    auth.redis.set("sapi:test:planted", token)
    ledger.responses.append('{"data": "' + token + '"}')
    client = redis.Redis.from_url(redis_url)

    try:
        found = leaks(ledger, connection, client)
    finally:
        auth.redis.delete("sapi:test:planted")
        ledger.logs.clear()
        ledger.responses.clear()
        client.close()

    assert sorted(f.split(" in ")[1] for f in found) == ["Redis", "log line", "response #0"]


def test_the_scanner_finds_a_key_planted_in_a_database_row(
    ledger: Ledger,
    connection: Connection,
    auth: AuthState,
    session: Any,
    make_user: Any,
    redis_url: str,
) -> None:
    row, key = key_service.create_api_key(
        session=session, auth=auth, user_id=make_user().user.id, name="n", scopes=["ai:jobs"]
    )
    ledger.add(key)
    row.name = key[:100]  # a bug that stored the key in clear
    session.add(row)
    session.commit()
    client = redis.Redis.from_url(redis_url)

    try:
        found = leaks(ledger, connection, client)
    finally:
        row.name = "fixed"
        session.add(row)
        session.commit()
        client.close()

    assert found == [f"{key[:6]}... in table api_keys"]
