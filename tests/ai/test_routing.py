"""Routing without I/O: weighted order, roles, and parameters a provider type cannot honour."""

from __future__ import annotations

import collections
from decimal import Decimal

import pytest

from app.ai import routing
from app.ai.registry import ProviderHandle, PublicModel, Registry, Target
from app.ai.types import ChatRequest, Message, ResponseFormat
from app.core.errors import ApiError
from app.core.specs.ai_provider import AIProviderSpec


def target(name: str, kind: str = "OpenAI", weight: int | None = None) -> Target:
    spec = AIProviderSpec.model_validate(
        {"type": kind, "baseURL": "https://example.com/v1",
         "models": [{"name": "m", "inputCostPer1M": "1", "outputCostPer1M": "2"}]}
    )  # fmt: skip
    handle = ProviderHandle(name, spec, None)
    price = spec.models[0]
    return Target(handle, "m", price, weight)


def registry(*models: PublicModel) -> Registry:
    return Registry(generation=1, handles={}, by_model={m.name: m for m in models})


def test_weighted_targets_come_first_in_proportion_and_fallbacks_keep_their_order() -> None:
    targets = (target("a", weight=3), target("b", weight=1), target("c"), target("d"))
    firsts = collections.Counter(routing.ordered(targets)[0].name for _ in range(4000))
    orders = {tuple(t.name for t in routing.ordered(targets))[2:] for _ in range(50)}

    assert set(firsts) == {"a", "b"}
    assert 0.70 < firsts["a"] / 4000 < 0.80  # 3:1
    assert orders == {("c", "d")}
    unweighted = (target("x"), target("y"))
    assert routing.ordered(unweighted) == unweighted


def test_a_route_for_other_roles_is_not_found_and_not_listed() -> None:
    reg = registry(PublicModel("admins", (target("a"),), frozenset({"admin"})))
    request = ChatRequest("admins", (Message("user", "hi"),), max_tokens=8)

    with pytest.raises(ApiError) as refused:
        routing.route(reg, request, frozenset({"user"}))

    assert refused.value.code.value == "AI_MODEL_NOT_FOUND"
    assert reg.visible(frozenset({"user"})) == []
    assert routing.route(reg, request, frozenset({"admin"}))[0].name == "a"


def test_a_parameter_no_target_can_honour_is_refused_and_others_are_skipped() -> None:
    mixed = registry(PublicModel("mixed", (target("claude", "Anthropic"), target("gpt"))))
    only = registry(PublicModel("only", (target("claude", "Anthropic"),)))
    seeded = ChatRequest("mixed", (Message("user", "hi"),), max_tokens=8, seed=1)
    json_out = ChatRequest(
        "only",
        (Message("user", "hi"),),
        max_tokens=8,
        response_format=ResponseFormat("json_object"),
    )

    assert [t.name for t in routing.route(mixed, seeded, frozenset())] == ["gpt"]
    with pytest.raises(ApiError) as refused:
        routing.route(only, json_out, frozenset())
    assert refused.value.code.value == "AI_UNSUPPORTED_PARAMETER"
    assert refused.value.details["param"] == "response_format"
    assert target("x").price.cost(1_000_000, 0) == Decimal("1")
