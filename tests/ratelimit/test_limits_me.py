"""`GET /v1/limits/me`: what can limit the caller and how much is left."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from tests.ratelimit.conftest import install_policies, one_rule

ME = "/v1/limits/me"


def rules_of(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{r['policy']}/{r['rule']}": r for r in body["data"]["rules"]}


def test_limits_me_lists_the_callers_rules_with_budgets_left_and_hides_shadow_policies(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(
        rl_app,
        {
            "free": one_rule(
                {"requests": 5, "window": "1h"},
                {"tokens": 1000, "window": "1d"},
                name="gen",
                match={"paths": ["/v1/rl-probe/ai/*"], "methods": ["POST"], "roles": ["user"]},
            ),
            "admins": one_rule({"requests": 9, "window": "1m"}, match={"roles": ["admin"]}),
            "exempted": one_rule({"requests": 9, "window": "1m"}, exempt={"roles": ["user"]}),
            "trial": one_rule({"requests": 1, "window": "1m"}, mode="Shadow"),
        },
    )
    client, auth = rl_app.test_client(), bearer("u1", ("user",))
    for _ in range(2):
        assert client.post("/v1/rl-probe/ai/generate", headers=auth).status_code == 200
    response = client.get(ME, headers=auth)
    assert response.status_code == 200, response.json
    body = response.json
    assert body["data"]["degraded"] is False
    rules = rules_of(body)
    assert set(rules) == {"free/gen", "default/global"}
    gen = rules["free/gen"]
    assert gen["match"] == {
        "versions": [],
        "paths": ["/v1/rl-probe/ai/*"],
        "methods": ["POST"],
        "roles": ["user"],
    }
    assert gen["key"] == "user" and gen["fallback"] is False
    requests, tokens = gen["limits"]
    assert (requests["name"], requests["remaining"], requests["quantity"]) == ("free.gen.1h", 3, 5)
    assert (tokens["unit"], tokens["remaining"], tokens["reset_seconds"]) == ("tokens", 1000, 0)
    default = rules["default/global"]
    assert default["fallback"] is True
    # The POSTs fell under free/gen, and this GET under `exempted` (which exempts users and
    # outranks the default), so the default budget is untouched.
    assert default["limits"][0]["remaining"] == 600


def test_reading_limits_me_consumes_only_the_request_itself(
    rl_app: Flask, bearer: Callable[..., dict[str, str]]
) -> None:
    install_policies(rl_app, {"p": one_rule({"requests": 10, "window": "1h"})})
    client, auth = rl_app.test_client(), bearer()
    remaining = [
        rules_of(client.get(ME, headers=auth).json)["p/probe"]["limits"][0]["remaining"]
        for _ in range(3)
    ]
    assert remaining == [9, 8, 7]


def test_limits_me_needs_a_caller(rl_app: Flask) -> None:
    response = rl_app.test_client().get(ME)
    assert response.status_code == 401
    assert response.json["error"]["code"] == "AUTH_REQUIRED"
