"""The limiter's Redis dies mid-test: Open policies serve with a warning, Closed ones 503,
and limits apply again when Redis is back, in the same app (no restart)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from devstack import RedisServer
from flask import Flask
from prometheus_client import REGISTRY

from app.core import db
from app.factory import create_app
from app.settings import Settings
from tests.ratelimit.conftest import install_policies, one_rule, probe_blueprint

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

OPEN_PATH = "/v1/rl-probe/things"
CLOSED_PATH = "/v1/rl-probe/things/1"
TIMEOUT = 0.2  # RATE_LIMIT_REDIS_TIMEOUT


@pytest.fixture(scope="module")
def limiter_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A Redis only the limiter uses, so killing it leaves the rest of the suite alone."""
    server = RedisServer(tmp_path_factory.mktemp("limiter-redis") / "data")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def chaos_app(settings: Settings, limiter_redis: RedisServer, tmp_path: Path) -> Iterator[Flask]:
    """An app whose limiter talks to `limiter_redis`, with one Open and one Closed policy."""
    limiter_redis.start()
    app = create_app(
        settings.model_copy(
            update={"rate_limit_redis_url": limiter_redis.url, "rate_limit_redis_timeout": TIMEOUT}
        )
    )
    app.register_blueprint(probe_blueprint())
    install_policies(
        app,
        {
            "lenient": one_rule(
                {"requests": 3, "window": "1h"},
                key="ip",
                failure="Open",
                priority=10,
                match={"paths": [OPEN_PATH]},
            ),
            "strict": one_rule(
                {"requests": 3, "window": "1h"},
                key="ip",
                failure="Closed",
                priority=10,
                match={"paths": ["/v1/rl-probe/things/*"]},
            ),
        },
    )
    yield app
    limiter_redis.start()
    app.extensions[db.EXTENSION].dispose()


def outcomes(policy: str, outcome: str) -> float:
    labels = {"policy": policy, "rule": "probe", "outcome": outcome}
    return REGISTRY.get_sample_value("sapi_ratelimit_decisions_total", labels) or 0.0


def statuses(app: Flask, path: str, n: int) -> list[int]:
    client = app.test_client()
    return [client.get(path).status_code for _ in range(n)]


def test_redis_outage_fails_open_with_a_warning_or_closed_with_503_then_limits_return(
    chaos_app: Flask, limiter_redis: RedisServer
) -> None:
    client = chaos_app.test_client()
    assert statuses(chaos_app, OPEN_PATH, 4) == [200, 200, 200, 429]
    assert statuses(chaos_app, CLOSED_PATH, 4) == [200, 200, 200, 429]
    fail_open, fail_closed = outcomes("lenient", "fail_open"), outcomes("strict", "fail_closed")

    limiter_redis.kill()

    for _ in range(3):
        started = time.perf_counter()
        served = client.get(OPEN_PATH)
        assert time.perf_counter() - started < 2 * TIMEOUT + 0.3
        assert served.status_code == 200, served.json
        assert [w["code"] for w in served.json["warnings"]] == ["RATE_LIMITER_DEGRADED"]
        assert "RateLimit" not in served.headers

        refused = client.get(CLOSED_PATH)
        assert refused.status_code == 503, refused.json
        assert refused.json["error"]["code"] == "RATE_LIMITER_UNAVAILABLE"
        assert refused.headers["Retry-After"] == "1"
    assert outcomes("lenient", "fail_open") - fail_open == 3
    assert outcomes("strict", "fail_closed") - fail_closed == 3

    limiter_redis.start()  # empty: the server keeps no data across restarts
    deadline = time.monotonic() + 5
    while client.get(CLOSED_PATH).status_code != 200:
        assert time.monotonic() < deadline, "limits did not come back within 5 s"
        time.sleep(0.05)
    # Limits apply again (the recovery probe above used one of the three).
    assert statuses(chaos_app, CLOSED_PATH, 3) == [200, 200, 429]
    assert statuses(chaos_app, OPEN_PATH, 4) == [200, 200, 200, 429]
    assert client.get(OPEN_PATH).json["warnings"] == []
