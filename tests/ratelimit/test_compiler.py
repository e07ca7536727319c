"""Compiling policies and choosing the rules of a request: pure functions, no Redis."""

from __future__ import annotations

from typing import Any

import pytest

from app.core.specs.rate_limit import FailureMode, RateLimitPolicySpec
from app.ratelimit.compiler import DefaultLimit, compile_policies, path_regex
from app.ratelimit.matching import Matcher, build_plan
from app.ratelimit.model import ANONYMOUS_ROLE, CompiledPolicies, Plan


def policy(
    *rules: dict[str, Any], priority: int = 100, mode: str = "Enforce", failure: str = "Open"
) -> RateLimitPolicySpec:
    """A validated policy spec from plain rule dicts."""
    return RateLimitPolicySpec.model_validate(
        {"mode": mode, "failureMode": failure, "priority": priority, "rules": list(rules)}
    )


def rule(
    name: str = "r", *, limits: list[dict[str, Any]] | None = None, **extra: Any
) -> dict[str, Any]:
    """A rule dict with one request limit by default."""
    return {"name": name, "limits": limits or [{"requests": 10, "window": "1m"}], **extra}


def plan_for(
    compiled: CompiledPolicies,
    *,
    method: str = "GET",
    path: str = "/v1/things",
    version: str | None = "1.0",
    roles: frozenset[str] = frozenset({"user", "readonly"}),
) -> Plan:
    return build_plan(compiled, method=method, path=path, version=version, roles=roles)


def names(plan: Plan) -> list[str]:
    return [f"{r.policy}/{r.name}" for r in plan.enforced]


@pytest.mark.parametrize(
    ("pattern", "path", "matches"),
    [
        ("/v1/things", "/v1/things", True),
        ("/v1/things", "/v1/things/1", False),
        ("/v1/things/*", "/v1/things/1", True),
        ("/v1/things/*", "/v1/things/1/parts/2", True),
        ("/v1/things/*", "/v1/things", False),
        ("/v1/things/{id}", "/v1/things/1", True),
        ("/v1/things/{id}", "/v1/things/1/parts", False),
        ("/v1/*/parts", "/v1/things/parts", True),
        ("/v1/*/parts", "/v1/things/x/parts", False),
        ("/v1/ai/gen*", "/v1/ai/generate", True),
        ("/v1/ai/gen*", "/v1/ai/jobs", False),
        ("/v1/a.b", "/v1/aXb", False),
    ],
)
def test_path_patterns_match_segments_and_a_trailing_star_matches_the_rest(
    pattern: str, path: str, matches: bool
) -> None:
    assert (path_regex(pattern).fullmatch(path) is not None) is matches


@pytest.mark.parametrize(
    ("limit", "capacity", "interval_ms"),
    [
        ({"requests": 60, "window": "1m"}, 60, 1000.0),
        ({"requests": 60, "window": "1m", "burst": 9}, 10, 1000.0),
        ({"requests": 10, "window": "1s", "burst": 0}, 1, 100.0),
        ({"tokens": 86_400, "window": "1d"}, 86_400, 1000.0),
    ],
)
def test_capacity_is_the_whole_quota_unless_a_burst_is_given(
    limit: dict[str, Any], capacity: int, interval_ms: float
) -> None:
    compiled = compile_policies({"p": policy(rule(limits=[limit]))})
    r = compiled.enforced[0].rules[0]
    (lim,) = r.request_limits or r.token_limits
    assert lim.capacity == capacity
    assert lim.interval_ms == interval_ms
    assert lim.horizon_ms == capacity * interval_ms


def test_limit_names_are_policy_rule_window_and_unique_within_a_rule() -> None:
    compiled = compile_policies(
        {
            "free": policy(
                rule(
                    "gen",
                    limits=[
                        {"requests": 5, "window": "1s"},
                        {"requests": 100, "window": "1m"},
                        {"requests": 120, "window": "1m", "burst": 3},
                    ],
                )
            )
        }
    )
    assert [lim.name for lim in compiled.enforced[0].rules[0].request_limits] == [
        "free.gen.1s",
        "free.gen.1m.1",
        "free.gen.1m.2",
    ]


def test_changing_a_limit_changes_its_redis_key_so_old_state_cannot_block() -> None:
    a = compile_policies({"p": policy(rule(limits=[{"requests": 10, "window": "1h"}]))})
    b = compile_policies({"p": policy(rule(limits=[{"requests": 10, "window": "1m"}]))})
    assert (
        a.enforced[0].rules[0].request_limits[0].key_part
        != b.enforced[0].rules[0].request_limits[0].key_part
    )


@pytest.mark.parametrize(
    ("match", "request_", "applies"),
    [
        ({"methods": ["POST"]}, {"method": "POST"}, True),
        ({"methods": ["POST"]}, {"method": "GET"}, False),
        ({"versions": ["2.0"]}, {"version": "1.0"}, False),
        ({"versions": ["1.0"]}, {"version": "1.0"}, True),
        ({"versions": ["1.0"]}, {"version": None}, False),
        ({"paths": ["/v1/ai/*"]}, {"path": "/v1/ai/generate"}, True),
        ({"paths": ["/v1/ai/*", "/v1/things"]}, {"path": "/v1/things"}, True),
        ({"paths": ["/v1/ai/*"]}, {"path": "/v1/things"}, False),
        ({"roles": ["admin"]}, {"roles": frozenset({"user"})}, False),
        ({"roles": ["user"]}, {"roles": frozenset({"admin", "user", "readonly"})}, True),
        ({"roles": [ANONYMOUS_ROLE]}, {"roles": frozenset({ANONYMOUS_ROLE})}, True),
        ({}, {"method": "DELETE", "path": "/anything", "version": None}, True),
    ],
)
def test_rules_match_on_version_path_method_and_role(
    match: dict[str, Any], request_: dict[str, Any], applies: bool
) -> None:
    compiled = compile_policies({"p": policy(rule(match=match))})
    assert bool(plan_for(compiled, **request_).enforced) is applies


def test_the_highest_priority_policy_wins_and_equal_priorities_all_apply() -> None:
    compiled = compile_policies(
        {
            "free": policy(rule("all"), priority=100),
            "premium": policy(rule("all", match={"roles": ["premium"]}), priority=200),
            "abuse": policy(rule("all", match={"roles": ["premium"]}), priority=200),
        }
    )
    assert names(plan_for(compiled, roles=frozenset({"user"}))) == ["free/all"]
    assert names(plan_for(compiled, roles=frozenset({"user", "premium"}))) == [
        "abuse/all",
        "premium/all",
    ]


def test_every_matching_rule_of_the_winning_policy_applies() -> None:
    compiled = compile_policies(
        {
            "p": policy(
                rule("any"),
                rule("posts", match={"methods": ["POST"]}),
                rule("other", match={"paths": ["/x"]}),
            )
        }
    )
    assert names(plan_for(compiled, method="POST")) == ["p/any", "p/posts"]


def test_an_exempt_caller_is_not_limited_and_does_not_fall_through_to_lower_priorities() -> None:
    compiled = compile_policies(
        {
            "strict": policy(rule("all", exempt={"roles": ["admin"]}), priority=200),
            "loose": policy(rule("all"), priority=100),
        },
        default=DefaultLimit(requests=5, window="1s"),
    )
    admin = plan_for(compiled, roles=frozenset({"admin", "user", "readonly"}))
    assert admin.enforced == ()
    assert [r.policy for r in admin.exempted] == ["strict"]
    assert not admin.empty
    assert names(plan_for(compiled)) == ["strict/all"]


def test_the_default_limit_applies_only_when_no_enforced_policy_matches() -> None:
    compiled = compile_policies(
        {
            "ai": policy(rule("gen", match={"paths": ["/v1/ai/*"]})),
            "trial": policy(rule("all"), mode="Shadow"),
        },
        default=DefaultLimit(requests=600, window="1m"),
    )
    assert names(plan_for(compiled, path="/v1/ai/generate")) == ["ai/gen"]
    plan = plan_for(compiled, path="/v1/things")
    assert names(plan) == ["default/global"]
    assert [[r.policy for r in group] for group in plan.shadow] == [["trial"]]


def test_shadow_policies_never_displace_enforced_ones_whatever_their_priority() -> None:
    compiled = compile_policies(
        {
            "live": policy(rule("all"), priority=10),
            "trial-a": policy(rule("all"), mode="Shadow", priority=1000),
            "trial-b": policy(rule("all"), mode="Shadow", priority=1),
        }
    )
    plan = plan_for(compiled)
    assert names(plan) == ["live/all"]
    assert [[r.policy for r in g] for g in plan.shadow] == [["trial-a"], ["trial-b"]]


def test_a_plan_fails_closed_when_any_enforced_rule_belongs_to_a_closed_policy() -> None:
    compiled = compile_policies(
        {
            "open": policy(rule("all"), priority=5),
            "closed": policy(rule("all"), priority=5, failure="Closed"),
        }
    )
    assert plan_for(compiled).fail_closed is True
    only_open = compile_policies({"open": policy(rule("all"))})
    assert plan_for(only_open).fail_closed is False
    assert (
        compile_policies(
            {}, default=DefaultLimit(1, "1s", failure_mode=FailureMode.CLOSED)
        ).default.failure_mode  # type: ignore[union-attr]
        is FailureMode.CLOSED
    )


def test_the_policy_header_lists_every_enforced_request_limit_but_no_token_budget() -> None:
    compiled = compile_policies(
        {
            "free": policy(
                rule(
                    "gen",
                    limits=[{"requests": 60, "window": "1m"}, {"tokens": 1000, "window": "1d"}],
                )
            )
        }
    )
    assert plan_for(compiled).policy_header == '"free.gen.1m";q=60;w=60'


def test_the_name_default_is_reserved_for_the_built_in_limit() -> None:
    compiled = compile_policies({"default": policy(rule())})
    assert compiled.enforced == ()
    assert "reserved" in compiled.errors["default"]


def test_plans_are_cached_per_request_shape_and_the_cache_is_bounded() -> None:
    matcher = Matcher(compile_policies({"p": policy(rule())}, generation=7))
    args: dict[str, Any] = {"method": "GET", "version": "1.0", "roles": frozenset({"user"})}
    first = matcher.plan(path="/v1/things", **args)
    assert matcher.plan(path="/v1/things", **args) is first
    assert matcher.generation == 7
    for i in range(5000):
        matcher.plan(path=f"/v1/things/{i}", **args)
    assert len(matcher._cache) <= 4096
