"""Gates: an earlier stage's Redis reads ride along the limiter's one script call.

A hook installed just before the rate-limit stage plays identify's part: it defers a
revocation-style key and, when the key exists, turns the caller anonymous.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis
from flask import Flask, g

from app.auth.caller import ANONYMOUS, Caller
from app.auth.gates import defer_gate
from app.ratelimit.stage import _limit_request, limiter
from app.ratelimit.store import LimiterStore, build_client
from tests.ratelimit.conftest import install_policies, one_rule
from tests.support.processes import free_port

GATE_KEY = "test:gate:revoked:alice"
THINGS = "/v1/rl-probe/things"
ALICE = Caller(kind="user", subject="alice", roles=frozenset({"user"}))


@pytest.fixture
def resolved(rl_app: Flask) -> Iterator[list[list[bytes | None] | None]]:
    """Install the gate-deferring hook; yields every value list `resolve` received."""
    seen: list[list[bytes | None] | None] = []

    def identify_like() -> None:
        g.caller = ALICE

        def resolve(values: list[bytes | None] | None) -> None:
            seen.append(values)
            if values is None or values[0] is not None:
                g.caller = ANONYMOUS  # revoked (or cannot tell): not alice any more

        defer_gate([GATE_KEY], resolve)

    hooks = rl_app.before_request_funcs[None]
    hooks.insert(hooks.index(_limit_request), identify_like)
    install_policies(rl_app, {"p": one_rule({"requests": 5, "window": "1h"}, key="user")})
    yield seen


def calls(client: redis.Redis, command: str) -> int:
    stats = client.info("commandstats").get(f"cmdstat_{command}", {})
    return int(stats.get("calls", 0))


def remaining(response: object) -> str:
    return response.headers["X-RateLimit-Remaining"]  # type: ignore[attr-defined, no-any-return]


def test_an_absent_gate_key_costs_no_extra_round_trip_and_the_caller_is_charged(
    rl_app: Flask, resolved: list[list[bytes | None] | None], redis_url: str
) -> None:
    store = redis.Redis.from_url(redis_url)
    client = rl_app.test_client()
    client.get(THINGS)  # loads the script
    before = (calls(store, "evalsha"), calls(store, "mget"), calls(store, "get"))
    responses = [client.get(THINGS) for _ in range(3)]
    after = (calls(store, "evalsha"), calls(store, "mget"), calls(store, "get"))
    assert [remaining(r) for r in responses] == ["3", "2", "1"]
    assert after[0] - before[0] == 3  # one script call per request ...
    assert after[1] - before[1] == 0  # ... and no separate read of the gate
    assert resolved[-3:] == [[None]] * 3


def test_an_existing_gate_key_charges_nothing_to_the_caller_and_rechecks_as_resolved(
    rl_app: Flask, resolved: list[list[bytes | None] | None], redis_url: str
) -> None:
    store = redis.Redis.from_url(redis_url)
    client = rl_app.test_client()
    assert remaining(client.get(THINGS)) == "4"  # alice
    store.set(GATE_KEY, b"revoked")
    revoked = client.get(THINGS)
    assert resolved[-1] == [b"revoked"]
    assert remaining(revoked) == "4"  # the anonymous caller's own (IP) budget
    store.delete(GATE_KEY)
    assert remaining(client.get(THINGS)) == "3"  # alice's budget was not touched


def test_a_gate_on_a_request_nothing_limits_is_read_with_one_mget(
    rl_app: Flask, resolved: list[list[bytes | None] | None], redis_url: str
) -> None:
    store = redis.Redis.from_url(redis_url)
    store.set(GATE_KEY, b"revoked")
    client = rl_app.test_client()
    before = calls(store, "mget")
    assert client.get("/livez").status_code == 200
    assert calls(store, "mget") - before == 1
    assert resolved == [[b"revoked"]]


@pytest.mark.parametrize("path", [THINGS, "/livez"])
def test_an_unreachable_redis_resolves_the_gate_with_none(
    rl_app: Flask, resolved: list[list[bytes | None] | None], path: str
) -> None:
    dead = build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    limiter(rl_app).store = LimiterStore(dead)
    response = rl_app.test_client().get(path)
    assert response.status_code == 200
    assert resolved == [None]


def test_every_deferred_gate_is_resolved_before_the_view(
    rl_app: Flask, resolved: list[list[bytes | None] | None]
) -> None:
    pending: list[bool] = []

    @rl_app.before_request
    def after_the_stage() -> None:
        pending.append(g.get("_ratelimit_gate") is not None)

    client = rl_app.test_client()
    for path in (THINGS, "/livez", "/v1/limits/me", "/nowhere"):
        client.get(path)
    assert pending == [False, False, False, False]
    assert len(resolved) == 4
