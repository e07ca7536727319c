"""Role x route x method: every protected route refuses whom it must, admits whom it may.

The auth routes have an explicit expectation table (adding a route without a row
fails). Every other protected route in the app (other subsystems') is checked against
its own declared requirement: anonymous gets 401, a role it does not admit gets 403,
and its OpenAPI entry documents the same requirement that is enforced.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.auth.caller import Caller, Role
from app.auth.decorators import SAFE_METHODS, Requirement, find_requirement
from app.core.openapi import find_operation
from tests.auth.conftest import bearer, error_code

ALL: Final = frozenset({"readonly", "user", "admin"})
WRITERS: Final = frozenset({"user", "admin"})
ADMIN: Final = frozenset({"admin"})
# (method, rule) -> roles admitted, and whether an API key holding every scope is.
EXPECTED: Final[dict[tuple[str, str], tuple[frozenset[str], bool]]] = {
    ("POST", "/v1/auth/logout"): (ALL, False),
    ("GET", "/v1/auth/me"): (ALL, True),
    ("GET", "/v1/auth/api-keys"): (ALL, False),
    ("POST", "/v1/auth/api-keys"): (WRITERS, False),
    ("DELETE", "/v1/auth/api-keys/<uuid:key_id>"): (ALL, False),
    ("GET", "/v1/auth/sessions"): (ALL, False),
    ("DELETE", "/v1/auth/sessions/<uuid:session_id>"): (ALL, False),
    ("GET", "/v1/admin/users"): (ADMIN, True),
    ("GET", "/v1/admin/users/<uuid:user_id>"): (ADMIN, True),
    ("PATCH", "/v1/admin/users/<uuid:user_id>"): (ADMIN, True),
}
PUBLIC_AUTH_ROUTES: Final = {
    ("POST", "/v1/auth/register"),
    ("POST", "/v1/auth/login"),
    ("POST", "/v1/auth/refresh"),
}
CALLERS: Final = ("anonymous", "readonly", "user", "admin", "api_key")
_PARAM = re.compile(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>")


def concrete(rule: str) -> str:
    """`rule` with every path parameter filled in."""

    def fill(match: re.Match[str]) -> str:
        converter = match.group(1)
        return {"uuid": str(uuid.uuid4()), "int": "1"}.get(converter or "", "x")

    return _PARAM.sub(fill, rule)


def protected_routes(app: Flask) -> list[tuple[str, str, Requirement]]:
    """Every (method, rule, requirement) the app enforces auth on."""
    out = []
    for rule in app.url_map.iter_rules():
        requirement = find_requirement(app.view_functions[rule.endpoint])
        if requirement is None:
            continue
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            out.append((method, rule.rule, requirement))
    return out


@pytest.fixture
def credentials(make_user: Any, issue: Any, make_key: Any) -> dict[str, dict[str, str]]:
    """Headers for each kind of caller."""
    from app.auth.caller import SCOPES

    headers: dict[str, dict[str, str]] = {"anonymous": {}}
    for role in ("readonly", "user", "admin"):
        headers[role] = bearer(issue(make_user(roles=(role,))).access_token)
    _, key = make_key(make_user(roles=("admin",)), sorted(SCOPES))
    headers["api_key"] = {"X-API-Key": key}
    return headers


def test_the_expectation_table_covers_every_protected_auth_and_admin_route(app: Flask) -> None:
    enforced = {
        (m, r) for m, r, _ in protected_routes(app) if r.startswith(("/v1/auth", "/v1/admin/users"))
    }
    auth_routes = {
        (m, rule.rule)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/v1/auth")
        for m in (rule.methods or set()) - {"HEAD", "OPTIONS"}
    }

    assert enforced == set(EXPECTED)
    assert auth_routes - enforced == PUBLIC_AUTH_ROUTES


@pytest.mark.parametrize("caller", CALLERS)
@pytest.mark.parametrize(("method", "rule"), sorted(EXPECTED), ids=lambda v: str(v))
def test_role_route_method_matrix(
    client: FlaskClient,
    credentials: dict[str, dict[str, str]],
    method: str,
    rule: str,
    caller: str,
) -> None:
    roles, keys_ok = EXPECTED[(method, rule)]

    response = client.open(concrete(rule), method=method, headers=credentials[caller], json={})

    if caller == "anonymous":
        assert response.status_code == 401
        assert error_code(response) == "AUTH_REQUIRED"
    elif (caller == "api_key" and keys_ok) or caller in roles:
        assert response.status_code not in (401, 403), response.get_json()
        assert response.status_code < 500
    else:
        assert response.status_code == 403
        assert error_code(response) == "AUTH_FORBIDDEN"


def _admits(requirement: Requirement, role: str, method: str) -> bool:
    caller = Caller(kind="user", subject="x", roles=frozenset({role}))
    if requirement.roles and not caller.has_role(*requirement.roles):
        return False
    return method in SAFE_METHODS or requirement.allow_readonly or caller.has_role(Role.USER)


def test_every_protected_route_in_the_app_refuses_anonymous_and_unadmitted_roles(
    app: Flask, client: FlaskClient, credentials: dict[str, dict[str, str]]
) -> None:
    routes = protected_routes(app)
    assert len(routes) >= len(EXPECTED)
    failures = []
    for method, rule, requirement in routes:
        path = concrete(rule)
        anonymous = client.open(path, method=method, json={})
        if anonymous.status_code != 401:
            failures.append((method, rule, "anonymous", anonymous.status_code))
        for role in ("readonly", "user", "admin"):
            if _admits(requirement, role, method):
                continue
            response = client.open(path, method=method, headers=credentials[role], json={})
            if response.status_code != 403:
                failures.append((method, rule, role, response.status_code))

    assert failures == []


def test_every_admin_route_requires_the_admin_role(app: Flask) -> None:
    loose = [
        (m, r)
        for m, r, req in protected_routes(app)
        if re.match(r"^/v\d+/admin/", r) and not _admin_only(req)
    ]
    unprotected = [
        rule.rule
        for rule in app.url_map.iter_rules()
        if re.match(r"^/v\d+/admin/", rule.rule)
        and find_requirement(app.view_functions[rule.endpoint]) is None
    ]

    assert loose == [] and unprotected == []


def _admin_only(requirement: Requirement) -> bool:
    return bool(requirement.roles) and all(
        not _admits(requirement, role, "GET") for role in ("readonly", "user")
    )


def test_openapi_documents_exactly_the_enforced_requirement(app: Flask) -> None:
    mismatches = []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        op, requirement = find_operation(view), find_requirement(view)
        if op is None:
            continue
        if op.auth != (requirement is not None):
            mismatches.append((rule.rule, "auth", op.auth))
        elif requirement is not None and set(op.roles) != set(requirement.roles):
            mismatches.append((rule.rule, "roles", op.roles, requirement.roles))

    assert mismatches == []
