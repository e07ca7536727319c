"""AI token budgets: reserve before the provider call, settle with the real usage."""

from __future__ import annotations

import pytest
from flask import Flask

from app.auth.caller import Caller
from app.core.errors import ApiError
from app.ratelimit.report import effective_limits
from app.ratelimit.stage import limiter
from app.ratelimit.tokens import Reservation, reserve_tokens, settle
from tests.ratelimit.conftest import install_policies, one_rule

ALICE = Caller(kind="user", subject="alice", roles=frozenset({"user"}))
GENERATE = {"path": "/v1/ai/generate", "method": "POST"}


def tokens_left(app: Flask, caller: Caller = ALICE) -> int | None:
    report = effective_limits(limiter(app), caller=caller, ip="127.0.0.1", headers={})
    for entry in report.rules:
        for budget in entry.budgets:
            if budget.limit.unit == "tokens":
                return budget.remaining
    raise AssertionError("no token budget")


@pytest.fixture
def budget_app(rl_app: Flask) -> Flask:
    """1000 tokens a day per user on /v1/ai/*, plus a 100-token shadow trial."""
    install_policies(
        rl_app,
        {
            "ai": one_rule({"tokens": 1000, "window": "1d"}, match={"paths": ["/v1/ai/*"]}),
            "trial": one_rule(
                {"tokens": 100, "window": "1d"}, mode="Shadow", match={"paths": ["/v1/ai/*"]}
            ),
        },
    )
    return rl_app


def test_reserving_takes_tokens_and_settling_refunds_what_was_not_used(budget_app: Flask) -> None:
    reservation = reserve_tokens(ALICE, 400, **GENERATE)
    assert reservation.limited
    assert tokens_left(budget_app) == 600
    settle(reservation, 150)
    assert tokens_left(budget_app) == 850


def test_usage_above_the_reservation_is_still_charged(budget_app: Flask) -> None:
    reservation = reserve_tokens(ALICE, 100, **GENERATE)
    settle(reservation, 1100)
    assert tokens_left(budget_app) == -100
    with pytest.raises(ApiError) as refused:
        reserve_tokens(ALICE, 1, **GENERATE)
    assert refused.value.code.value == "AI_TOKEN_LIMIT"


def test_a_reservation_larger_than_what_is_left_is_refused_with_retry_after(
    budget_app: Flask,
) -> None:
    reserve_tokens(ALICE, 900, **GENERATE)
    with pytest.raises(ApiError) as refused:
        reserve_tokens(ALICE, 200, **GENERATE)
    error = refused.value
    assert error.status == 429
    assert error.code.value == "AI_TOKEN_LIMIT"
    assert error.details["remaining_tokens"] == 100
    assert error.details["never_fits"] is False
    # 100 more tokens refill at 1000/day: 8640 s.
    assert 8600 <= int(error.headers["Retry-After"]) <= 8641
    assert tokens_left(budget_app) == 100  # the refused reservation took nothing


def test_a_reservation_above_the_whole_budget_says_it_never_fits(budget_app: Flask) -> None:
    with pytest.raises(ApiError) as refused:
        reserve_tokens(ALICE, 5000, **GENERATE)
    assert refused.value.details["never_fits"] is True


def test_budgets_are_per_user(budget_app: Flask) -> None:
    bob = Caller(kind="user", subject="bob", roles=frozenset({"user"}))
    reserve_tokens(ALICE, 1000, **GENERATE)
    assert reserve_tokens(bob, 1000, **GENERATE).limited


def test_routes_without_a_budget_reserve_nothing(budget_app: Flask) -> None:
    reservation = reserve_tokens(ALICE, 10_000, path="/v1/notes", method="POST")
    assert reservation == Reservation(tokens=10_000, entries=())
    settle(reservation, 20_000)  # nothing to charge, nothing raised


def test_a_shadow_budget_never_refuses_a_reservation(budget_app: Flask) -> None:
    first = reserve_tokens(ALICE, 80, **GENERATE)
    second = reserve_tokens(ALICE, 80, **GENERATE)  # would exceed the 100-token trial
    assert first.limited and second.limited
    assert tokens_left(budget_app) == 840


def test_reserving_inside_a_request_matches_that_requests_route(budget_app: Flask) -> None:
    with budget_app.test_request_context("/v1/ai/generate", method="POST"):
        reservation = reserve_tokens(ALICE, 10)
    assert reservation.limited
    with budget_app.test_request_context("/v1/notes", method="POST"):
        assert not reserve_tokens(ALICE, 10).limited
