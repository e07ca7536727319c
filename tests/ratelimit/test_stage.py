"""The rate-limit stage through the app: 429 envelope, headers, keys, shadow, exemptions."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import redis
from flask import Flask
from prometheus_client import REGISTRY

from app.ratelimit import keys
from tests.ratelimit.conftest import install_policies, one_rule

# RFC 9651 List of Strings with integer parameters, as draft-ietf-httpapi-ratelimit-headers.
SF_ITEM = r'"[a-z0-9.-]+"(;[a-z]+=[0-9]+)+'
SF_LIST = re.compile(rf"^{SF_ITEM}(, {SF_ITEM})*$")
THINGS = "/v1/rl-probe/things"


def hit(client: Any, n: int, path: str = THINGS, **kwargs: Any) -> list[int]:
    return [client.get(path, **kwargs).status_code for _ in range(n)]


def decisions(policy: str, rule: str, outcome: str) -> float:
    value = REGISTRY.get_sample_value(
        "sapi_ratelimit_decisions_total", {"policy": policy, "rule": rule, "outcome": outcome}
    )
    return value or 0.0


def test_the_request_over_the_limit_gets_429_with_retry_after_and_the_limit_named(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(rl_app, {"tight": one_rule({"requests": 3, "window": "1h"})})
    client, auth = rl_app.test_client(), bearer()
    assert hit(client, 3, headers=auth) == [200, 200, 200]
    refused = client.get(THINGS, headers=auth)
    assert refused.status_code == 429
    body = refused.json
    assert body["success"] is False
    assert body["error"]["code"] == "RATE_LIMIT_EXCEEDED"
    assert body["error"]["details"]["policy"] == "tight"
    assert body["error"]["details"]["rule"] == "probe"
    assert body["error"]["details"]["limit"] == "tight.probe.1h"
    assert int(refused.headers["Retry-After"]) == 1200  # one of 3 per hour refills in 20 min
    assert refused.headers["X-RateLimit-Remaining"] == "0"
    assert refused.headers["X-RateLimit-Reset"] == "1200"
    assert refused.headers["RateLimit"].startswith('"tight.probe.1h";r=0;t=')


def test_headers_follow_the_ietf_structured_field_syntax_and_the_x_ratelimit_convention(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(
        rl_app,
        {
            "plan": one_rule(
                {"requests": 10, "window": "1s"},
                {"requests": 100, "window": "1h"},
            )
        },
    )
    response = rl_app.test_client().get(THINGS, headers=bearer())
    assert response.status_code == 200
    policy, current = response.headers["RateLimit-Policy"], response.headers["RateLimit"]
    assert SF_LIST.match(policy) and SF_LIST.match(current)
    assert policy == '"plan.probe.1s";q=10;w=1, "plan.probe.1h";q=100;w=3600'
    assert current.startswith('"plan.probe.1s";r=9;t=1, "plan.probe.1h";r=99;t=')
    # X-RateLimit-* repeat the limit the client will hit first.
    assert response.headers["X-RateLimit-Limit"] == "10"
    assert response.headers["X-RateLimit-Remaining"] == "9"
    assert response.headers["X-RateLimit-Reset"] == "1"


def test_each_user_has_an_own_budget_and_anonymous_callers_are_keyed_by_ip(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(rl_app, {"per-user": one_rule({"requests": 2, "window": "1h"})})
    client = rl_app.test_client()
    alice, bob = bearer("alice"), bearer("bob")
    assert hit(client, 3, headers=alice) == [200, 200, 429]
    assert hit(client, 3, headers=bob) == [200, 200, 429]
    # A second token of the same user shares the user's budget.
    assert hit(client, 1, headers=bearer("alice")) == [429]
    one = {"environ_base": {"REMOTE_ADDR": "10.0.0.1"}}
    two = {"environ_base": {"REMOTE_ADDR": "10.0.0.2"}}
    assert hit(client, 3, **one) == [200, 200, 429]
    assert hit(client, 1, **two) == [200]


@pytest.mark.parametrize(
    ("key", "first", "second", "shared"),
    [
        ("global", {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}, True),
        ("ip", {"REMOTE_ADDR": "10.0.0.1"}, {"REMOTE_ADDR": "10.0.0.2"}, False),
        ("header:X-Tenant", {"HTTP_X_TENANT": "acme"}, {"HTTP_X_TENANT": "acme"}, True),
        ("header:X-Tenant", {"HTTP_X_TENANT": "acme"}, {"HTTP_X_TENANT": "globex"}, False),
    ],
)
def test_key_kinds_decide_who_shares_a_budget(
    rl_app: Flask, key: str, first: dict[str, str], second: dict[str, str], shared: bool
) -> None:
    install_policies(rl_app, {"k": one_rule({"requests": 1, "window": "1h"}, key=key)})
    client = rl_app.test_client()
    assert hit(client, 1, environ_base=first) == [200]
    assert hit(client, 1, environ_base=second) == ([429] if shared else [200])


def test_a_role_key_gives_everyone_holding_the_role_one_budget(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(
        rl_app,
        {
            "ro": one_rule(
                {"requests": 2, "window": "1h"}, key="role", match={"roles": ["readonly"]}
            )
        },
    )
    client = rl_app.test_client()
    assert hit(client, 1, headers=bearer("a", ("readonly",))) == [200]
    assert hit(client, 1, headers=bearer("b", ("readonly",))) == [200]
    assert hit(client, 1, headers=bearer("c", ("readonly",))) == [429]


def test_the_default_limit_applies_when_no_policy_matches(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(
        rl_app, {"ai": one_rule({"requests": 1, "window": "1h"}, match={"paths": ["/v1/ai/*"]})}
    )
    response = rl_app.test_client().get(THINGS, headers=bearer())
    assert response.status_code == 200
    assert response.headers["RateLimit-Policy"] == '"default.global.1m";q=600;w=60'
    assert response.headers["X-RateLimit-Remaining"] == "599"


def test_exempt_roles_are_never_limited_and_counted_as_exempt(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(
        rl_app,
        {"x": one_rule({"requests": 1, "window": "1h"}, exempt={"roles": ["admin"]})},
    )
    before = decisions("x", "probe", "exempt")
    client, admin = rl_app.test_client(), bearer("root", ("admin",))
    assert hit(client, 5, headers=admin) == [200] * 5
    assert "RateLimit" not in client.get(THINGS, headers=admin).headers
    assert decisions("x", "probe", "exempt") - before == 6
    assert hit(client, 2, headers=bearer("u", ("user",))) == [200, 429]


def test_a_shadow_policy_never_blocks_is_invisible_and_counts_what_it_would_reject(
    rl_app: Flask, bearer: Callable[..., dict[str, str]], redis_url: str
) -> None:
    install_policies(rl_app, {"trial": one_rule({"requests": 2, "window": "1h"}, mode="Shadow")})
    before = decisions("trial", "probe", "shadow_rejected")
    client, auth = rl_app.test_client(), bearer()
    responses = [client.get(THINGS, headers=auth) for _ in range(5)]
    assert [r.status_code for r in responses] == [200] * 5
    for r in responses:  # only the default limit shows; nothing names the trial
        assert "trial" not in r.headers.get("RateLimit-Policy", "")
        assert r.json["warnings"] == []
    assert decisions("trial", "probe", "shadow_rejected") - before == 3
    assert redis.Redis.from_url(redis_url).get(keys.shadow_key("trial")) == b"3"


def test_an_exhausted_token_budget_refuses_requests_before_they_reach_the_provider(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    from app.auth.identify import current_caller
    from app.ratelimit.tokens import reserve_tokens

    install_policies(
        rl_app,
        {"ai": one_rule({"tokens": 100, "window": "1d"}, match={"paths": ["/v1/rl-probe/ai/*"]})},
    )
    client, auth = rl_app.test_client(), bearer()
    path = "/v1/rl-probe/ai/generate"
    assert client.post(path, headers=auth).status_code == 200
    with rl_app.test_request_context(path, method="POST", headers=auth):
        rl_app.preprocess_request()
        reserve_tokens(current_caller(), 100)
    refused = client.post(path, headers=auth)
    assert refused.status_code == 429
    assert refused.json["error"]["details"]["limit"] == "ai.probe.1d"
    assert refused.json["error"]["details"]["unit"] == "tokens"


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_probes_and_scrapes_are_never_limited(rl_app: Flask, path: str) -> None:
    install_policies(rl_app, {"all": one_rule({"requests": 1, "window": "1h"}, key="global")})
    client = rl_app.test_client()
    statuses = hit(client, 3, path=path)
    assert 429 not in statuses
    assert "RateLimit" not in client.get(path).headers


def test_allowed_and_rejected_decisions_are_counted_per_policy_and_rule(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(rl_app, {"count": one_rule({"requests": 2, "window": "1h"})})
    allowed, rejected = (
        decisions("count", "probe", "allowed"),
        decisions("count", "probe", "rejected"),
    )
    hit(rl_app.test_client(), 5, headers=bearer())
    assert decisions("count", "probe", "allowed") - allowed == 2
    assert decisions("count", "probe", "rejected") - rejected == 3
