"""HEAD is a GET without the body: a GET rule limits it too, from the same bucket."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask

from app.core.specs.rate_limit import RateLimitPolicySpec
from app.ratelimit.compiler import compile_policy
from tests.ratelimit.conftest import install_policies, one_rule

THINGS = "/v1/rl-probe/things"
Bearer = Callable[..., dict[str, str]]


def get_only(requests: int = 4) -> dict[str, object]:
    """A policy limiting GETs of the probe route per user."""
    return one_rule(
        {"requests": requests, "window": "1h"}, match={"paths": [THINGS], "methods": ["GET"]}
    )


def test_a_get_rule_limits_head_requests(rl_app: Flask, bearer: Bearer) -> None:
    install_policies(rl_app, {"reads": get_only()})
    client, auth = rl_app.test_client(), bearer("head-only")

    answers = [client.head(THINGS, headers=auth) for _ in range(5)]

    assert [r.status_code for r in answers] == [200, 200, 200, 200, 429]
    assert answers[0].headers["RateLimit-Policy"] == '"reads.probe.1h";q=4;w=3600'
    assert answers[-1].headers["X-RateLimit-Remaining"] == "0"
    assert int(answers[-1].headers["Retry-After"]) > 0


def test_gets_and_heads_spend_one_shared_bucket(rl_app: Flask, bearer: Bearer) -> None:
    install_policies(rl_app, {"reads": get_only()})
    client, auth = rl_app.test_client(), bearer("mixed")

    statuses = [
        client.get(THINGS, headers=auth).status_code,
        client.head(THINGS, headers=auth).status_code,
        client.get(THINGS, headers=auth).status_code,
        client.head(THINGS, headers=auth).status_code,
    ]
    assert statuses == [200] * 4
    assert client.get(THINGS, headers=auth).status_code == 429
    assert client.head(THINGS, headers=auth).status_code == 429
    # Another user has a bucket of their own: the shared one is per key, not global.
    assert client.head(THINGS, headers=bearer("someone-else")).status_code == 200


def test_a_post_rule_does_not_limit_head_or_get(rl_app: Flask, bearer: Bearer) -> None:
    posts = one_rule(
        {"requests": 1, "window": "1h"}, match={"paths": [THINGS], "methods": ["POST"]}
    )
    install_policies(rl_app, {"writes": posts, "reads": get_only(requests=100)})
    client, auth = rl_app.test_client(), bearer("poster")

    assert client.post(THINGS, headers=auth).status_code == 200
    assert client.post(THINGS, headers=auth).status_code == 429
    assert [client.head(THINGS, headers=auth).status_code for _ in range(3)] == [200] * 3


@pytest.mark.parametrize(
    ("declared", "compiled"),
    [
        (["GET"], {"GET", "HEAD"}),
        (["GET", "POST"], {"GET", "HEAD", "POST"}),
        (["HEAD"], {"HEAD"}),
        (["POST"], {"POST"}),
        ([], None),
    ],
)
def test_compiled_methods_add_head_to_get(declared: list[str], compiled: set[str] | None) -> None:
    spec = RateLimitPolicySpec.model_validate(
        one_rule({"requests": 1, "window": "1m"}, match={"methods": declared})
    )
    (rule,) = compile_policy("p", spec).rules
    assert rule.methods == (None if compiled is None else frozenset(compiled))
