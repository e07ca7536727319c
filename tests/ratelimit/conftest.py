"""Rate-limit test helpers: a few routes, policies from plain dicts, access tokens."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Blueprint, Flask, Response

from app.auth.state import auth_state
from app.auth.tokens import issue_access_token
from app.core.responses import ok
from app.core.specs.rate_limit import RateLimitPolicySpec
from app.ratelimit.service import StaticPolicies
from app.ratelimit.stage import limiter

_generation = itertools.count(1000)


def probe_blueprint() -> Blueprint:
    """Routes under /v1/rl-probe used only by these tests."""
    bp = Blueprint("rl_probe", __name__, url_prefix="/v1/rl-probe")

    @bp.get("/things")
    @bp.post("/things")
    def things() -> Response:
        return ok({"ok": True})

    @bp.get("/things/<int:thing_id>")
    def thing(thing_id: int) -> Response:
        return ok({"id": thing_id})

    @bp.post("/ai/generate")
    def generate() -> Response:
        return ok({"text": "hello"})

    return bp


def install_policies(app: Flask, policies: dict[str, dict[str, Any]]) -> None:
    """Serve `policies` (name -> spec dict) as a new config generation."""
    specs = {name: RateLimitPolicySpec.model_validate(spec) for name, spec in policies.items()}
    snap = StaticPolicies(generation=next(_generation), rate_limit_policies=specs)
    limiter(app).snapshot = lambda: snap


def one_rule(
    *limits: dict[str, Any],
    name: str = "probe",
    key: str = "user",
    mode: str = "Enforce",
    failure: str = "Open",
    priority: int = 100,
    **rule: Any,
) -> dict[str, Any]:
    """A policy spec dict with a single rule."""
    return {
        "mode": mode,
        "failureMode": failure,
        "priority": priority,
        "rules": [{"name": name, "key": key, "limits": list(limits), **rule}],
    }


@pytest.fixture
def rl_app(app: Flask) -> Flask:
    """The test app with the probe routes and no policies (default limit on)."""
    app.register_blueprint(probe_blueprint())
    install_policies(app, {})
    return app


@pytest.fixture
def bearer(rl_app: Flask) -> Callable[..., dict[str, str]]:
    """`bearer(subject, roles)` -> an Authorization header with a fresh access token."""
    state = auth_state()
    s = state.settings

    def make(subject: str = "user-1", roles: tuple[str, ...] = ("user",)) -> dict[str, str]:
        token, _ = issue_access_token(
            keyring=state.keyring,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=300,
            subject=subject,
            roles=list(roles),
            session_id=None,
        )
        return {"Authorization": f"Bearer {token}"}

    return make
