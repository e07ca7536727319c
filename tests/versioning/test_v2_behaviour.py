"""A carried-over operation behaves on /v2 as on /v1: auth, scopes, validation, limits, links.

A sample of routes (public, authenticated, API-key scoped, admin), each asked the same
question under both prefixes. What differs is only what names the version: the
`API-Version` header, `meta.api_version`, the metrics label and the lifecycle.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from app.auth.state import auth_state
from app.auth.users import create_user
from app.config_store.extension import config_store
from tests.core.observability.conftest import sample
from tests.versioning.conftest import Declare, Headers

PREFIXES = ["/v1", "/v2"]
LONG_AGO = datetime.now(UTC) - timedelta(days=60)


def error_code(response: Any) -> str | None:
    """The envelope's error code, if any."""
    error = response.get_json()["error"]
    return error["code"] if error else None


def test_login_answers_alike_and_its_token_works_on_both_versions(
    client: FlaskClient, session: Session
) -> None:
    email, password = f"login-{secrets.token_hex(4)}@example.com", secrets.token_urlsafe(18)
    create_user(session=session, auth=auth_state(), email=email, password=password)

    wrong = [
        client.post(f"{p}/auth/login", json={"email": email, "password": password + "x"})
        for p in PREFIXES
    ]
    assert [(r.status_code, error_code(r)) for r in wrong] == [
        (401, "AUTH_INVALID_CREDENTIALS")
    ] * 2
    login = client.post("/v2/auth/login", json={"email": email, "password": password})
    assert login.status_code == 200 and login.get_json()["meta"]["api_version"] == "2.0"
    token = {"Authorization": f"Bearer {login.get_json()['data']['access_token']}"}
    me = [client.get(f"{p}/auth/me", headers=token) for p in PREFIXES]
    assert [r.status_code for r in me] == [200, 200]
    assert me[0].get_json()["data"] == me[1].get_json()["data"]
    assert [r.headers["API-Version"] for r in me] == ["1.0", "2.0"]
    assert [r.get_json()["meta"]["api_version"] for r in me] == ["1.0", "2.0"]


def test_validation_errors_are_identical_on_both_versions(client: FlaskClient) -> None:
    bodies = [
        client.post(f"{p}/auth/register", json={"email": "nope", "extra": 1}).get_json()
        for p in PREFIXES
    ]
    assert bodies[0]["error"]["code"] == "VAL_INVALID_FORMAT"
    assert bodies[0]["error"] == bodies[1]["error"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_api_key_scopes_are_enforced_alike(
    client: FlaskClient, api_key_for: Headers, prefix: str
) -> None:
    key = api_key_for("limits:read")

    assert client.get(f"{prefix}/limits/me", headers=key).status_code == 200
    refused = client.get(f"{prefix}/auth/me", headers=key)
    assert (refused.status_code, error_code(refused)) == (403, "AUTH_INSUFFICIENT_SCOPE")


@pytest.mark.parametrize("prefix", PREFIXES)
@pytest.mark.parametrize(
    ("caller", "status", "code"),
    [("anonymous", 401, "AUTH_REQUIRED"), ("user", 403, "AUTH_FORBIDDEN"), ("admin", 200, None)],
)
def test_admin_routes_admit_only_admins_on_both_versions(
    client: FlaskClient, bearer_for: Headers, prefix: str, caller: str, status: int, code: str
) -> None:
    headers = {} if caller == "anonymous" else bearer_for(caller)

    response = client.get(f"{prefix}/admin/users?limit=1", headers=headers)

    assert (response.status_code, error_code(response)) == (status, code)
    assert response.headers["Cache-Control"].startswith("no-store")


@pytest.mark.parametrize("prefix", PREFIXES)
def test_created_resources_are_located_in_the_version_that_created_them(
    client: FlaskClient, bearer_for: Headers, prefix: str
) -> None:
    admin, user = bearer_for("admin"), bearer_for("user")
    name = f"announced-{prefix.strip('/')}"
    created = [
        client.put(
            f"{prefix}/admin/api-versions/{name}",
            headers=admin,
            json={"spec": {"version": "7.0", "phase": "Supported"}},
        ),
        client.post(
            f"{prefix}/auth/api-keys", headers=user, json={"name": "k", "scopes": ["profile:read"]}
        ),
        client.post(f"{prefix}/notes", json={"title": "located"}, headers=user),
    ]

    assert [r.status_code for r in created] == [201, 201, 201]
    key_id, note_id = created[1].get_json()["data"]["id"], created[2].get_json()["data"]["id"]
    assert [r.headers["Location"] for r in created] == [
        f"{prefix}/admin/api-versions/{name}",
        f"{prefix}/auth/api-keys/{key_id}",
        f"{prefix}/notes/{note_id}",
    ]
    assert client.get(created[2].headers["Location"], headers=user).status_code == 200


def test_requests_on_v2_copies_are_counted_under_version_2_0(
    client: FlaskClient, bearer_for: Headers
) -> None:
    def count(route: str, version: str) -> float:
        labels = {"route": route, "method": "GET", "status": "200", "api_version": version}
        return sample("sapi_http_requests_total", **labels)

    before = count("/v2/auth/me", "2.0"), count("/v1/auth/me", "1.0")

    assert client.get("/v2/auth/me", headers=bearer_for("user")).status_code == 200

    assert (count("/v2/auth/me", "2.0"), count("/v1/auth/me", "1.0")) == (before[0] + 1, before[1])


def install_policy(
    app: Flask, client: FlaskClient, session: Session, admin: dict[str, str], match: dict[str, Any]
) -> None:
    """PUT a 2-per-minute policy on `GET /auth/me` through /v2/admin and load it."""
    spec = {
        "rules": [
            {
                "name": "me",
                "key": "user",
                "match": match,
                "limits": [{"requests": 2, "window": "1m"}],
            }
        ]
    }
    response = client.put("/v2/admin/rate-limit-policies/me", headers=admin, json={"spec": spec})
    assert response.status_code == 201, response.get_json()
    config_store(app).refresh(session.connection())


def test_a_policy_on_both_versions_limits_them_from_one_budget(
    app: Flask, client: FlaskClient, session: Session, bearer_for: Headers
) -> None:
    install_policy(app, client, session, bearer_for("admin"), {"paths": ["/v*/auth/me"]})
    user = bearer_for("user")

    answers = [client.get(f"{p}/auth/me", headers=user) for p in ["/v1", "/v2", "/v2", "/v1"]]

    assert [r.status_code for r in answers] == [200, 200, 429, 429]
    assert {error_code(r) for r in answers[2:]} == {"RATE_LIMIT_EXCEEDED"}
    assert answers[0].headers["RateLimit-Policy"] == answers[1].headers["RateLimit-Policy"]
    assert all("Retry-After" in r.headers for r in answers[2:])


def test_a_policy_matched_on_version_1_0_leaves_v2_alone(
    app: Flask, client: FlaskClient, session: Session, bearer_for: Headers
) -> None:
    # Policies name versions and paths on purpose (docs/versioning.md): a v1-only policy
    # must be widened to cover the v2 copies.
    install_policy(app, client, session, bearer_for("admin"), {"versions": ["1.0"]})
    user = bearer_for("user")

    v1 = [client.get("/v1/auth/me", headers=user).status_code for _ in range(3)]
    v2 = [client.get("/v2/auth/me", headers=user).status_code for _ in range(3)]

    assert (v1, v2) == ([200, 200, 429], [200, 200, 200])


def test_deprecating_1_0_points_at_the_v2_copy_and_leaves_it_alone(
    client: FlaskClient, declare: Declare, bearer_for: Headers
) -> None:
    declare(
        "v1", version="1.0", phase="Deprecated", deprecatedAt=LONG_AGO.isoformat(), successor="2.0"
    )
    user = bearer_for("user")

    # v2 first: the test app's context (hence `g` and its warnings) spans both requests.
    new, old = (client.get(f"{p}/auth/me", headers=user) for p in reversed(PREFIXES))

    assert old.status_code == new.status_code == 200
    assert '</v2/auth/me>; rel="successor-version"' in old.headers.getlist("Link")
    assert [w["code"] for w in old.get_json()["warnings"]] == ["VERSION_DEPRECATED"]
    assert "Deprecation" not in new.headers and new.get_json()["warnings"] == []
    assert new.headers["API-Version"] == "2.0"


def test_retiring_1_0_leaves_the_v2_copies_serving(
    client: FlaskClient, declare: Declare, bearer_for: Headers
) -> None:
    declare("v1", version="1.0", phase="Retired", successor="2.0")
    user, admin = bearer_for("user"), bearer_for("admin")

    gone = client.get("/v1/limits/me", headers=user)
    assert (gone.status_code, error_code(gone)) == (410, "VERSION_RETIRED")
    assert client.get("/v2/limits/me", headers=user).status_code == 200
    assert client.get("/v2/admin/users?limit=1", headers=admin).status_code == 200
    assert client.get("/v1/admin/users?limit=1", headers=admin).status_code == 200  # exempt


def test_login_and_admin_stay_reachable_on_a_retired_2_0(
    client: FlaskClient, declare: Declare
) -> None:
    declare("v2", version="2.0", phase="Retired")

    assert client.get("/v2/limits/me").status_code == 410
    assert client.post("/v2/auth/login", json={}).status_code == 422  # validated, not refused
    assert client.get("/v2/admin/config").status_code == 401
