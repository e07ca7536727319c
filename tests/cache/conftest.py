"""Cache test routes: views that count their computations in Redis."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import redis
from flask import Blueprint, Flask, Response, current_app, g, request

from app.auth.state import auth_state
from app.auth.tokens import issue_access_token
from app.cache.http import cached, invalidates
from app.core.errors import NotFound
from app.core.responses import ok
from app.core.warnings import warn

COUNTER = "test:cache:computations:"


def computed(name: str) -> int:
    """Count one computation of `name` (in Redis, so every process shares the count)."""
    client = redis.Redis.from_url(current_app.extensions["settings"].redis_url)
    return int(client.incr(COUNTER + name))


def probe_blueprint(version: int = 1) -> Blueprint:
    """Cached routes under /v{version}/cache-probe."""
    bp = Blueprint(f"cache_probe_v{version}", __name__, url_prefix=f"/v{version}/cache-probe")

    @bp.before_request
    def _version() -> None:
        g.api_version = f"{version}.0"

    @bp.get("/items")
    @cached(ttl=30, tags=["items:{caller}"])
    def items() -> Response:
        return ok({"n": computed("items"), "args": sorted(request.args.items(multi=True))})

    @bp.post("/items")
    @invalidates("items:{caller}")
    def add_item() -> Response:
        return ok({"added": True}, status=201)

    @bp.get("/public")
    @cached(ttl=30, vary_on_caller=False, max_age=60)
    def public() -> Response:
        return ok({"n": computed("public")})

    @bp.get("/slow")
    @cached(ttl=30)
    def slow() -> Response:
        n = computed("slow")
        time.sleep(0.5)
        return ok({"n": n})

    @bp.get("/missing")
    @cached(ttl=30)
    def missing() -> Response:
        computed("missing")
        raise NotFound("nothing here")

    @bp.get("/warned")
    @cached(ttl=30)
    def warned() -> Response:
        warn("PARTIAL_RESULT", "Only the first page was computed.", n=computed("warned"))
        return ok({"page": 1}, message="partial")

    return bp


@pytest.fixture
def cache_app(app: Flask) -> Flask:
    """The test app with the cache probe routes under /v1 and /v2."""
    app.register_blueprint(probe_blueprint(1))
    app.register_blueprint(probe_blueprint(2))
    return app


@pytest.fixture
def count(redis_url: str) -> Callable[[str], int]:
    """How many times a probe view has computed."""
    client = redis.Redis.from_url(redis_url)

    def read(name: str) -> int:
        return int(client.get(COUNTER + name) or 0)

    return read


@pytest.fixture
def bearer(cache_app: Flask) -> Callable[[str], dict[str, str]]:
    """`bearer(subject)` -> an Authorization header for a user."""
    state = auth_state()
    s = state.settings

    def make(subject: str) -> dict[str, str]:
        token, _ = issue_access_token(
            keyring=state.keyring,
            issuer=s.jwt_issuer,
            audience=s.jwt_audience,
            ttl=300,
            subject=subject,
            roles=["user"],
            session_id=None,
        )
        return {"Authorization": f"Bearer {token}"}

    return make
