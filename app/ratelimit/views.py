"""`GET /v1/limits/me`: the caller's effective rate limits and what is left of each."""

from __future__ import annotations

from typing import Literal

from flask import Blueprint, Response, request
from pydantic import BaseModel, Field

from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.core import client_ip
from app.core.openapi import operation
from app.core.responses import ok
from app.ratelimit.model import DEFAULT_POLICY
from app.ratelimit.report import RuleBudgets, effective_limits
from app.ratelimit.stage import limiter

bp = Blueprint("limits", __name__, url_prefix="/limits")


class LimitBudget(BaseModel):
    """One limit of a rule and the caller's budget left in it."""

    name: str = Field(description="Name used in the RateLimit / RateLimit-Policy headers")
    unit: Literal["requests", "tokens", "usd"] = Field(
        description="`usd` budgets count in millionths of a US dollar"
    )
    quantity: int = Field(description="Units per window")
    window: str = Field(description="Window as written in the policy (1m, 1h, ...)")
    window_seconds: int
    burst_capacity: int = Field(description="Units usable at once from a full bucket")
    remaining: int | None = Field(description="Units usable now (null: limiter unreachable)")
    reset_seconds: int | None = Field(description="Seconds until the budget is whole again")


class RuleMatch(BaseModel):
    """Where a rule applies; empty lists match everything."""

    versions: list[str]
    paths: list[str]
    methods: list[str]
    roles: list[str]


class RuleLimits(BaseModel):
    """A rule that can limit the caller."""

    policy: str
    rule: str
    priority: int
    failure_mode: Literal["Open", "Closed"]
    key: str = Field(description="What the budget is shared by (user, apiKey, ip, role, ...)")
    fallback: bool = Field(description="True for the default limit (applies when no policy does)")
    match: RuleMatch
    limits: list[LimitBudget]


class LimitsMe(BaseModel):
    """The caller's effective limits; the highest-priority matching policy wins per request."""

    generation: int = Field(description="Config generation the limits come from")
    degraded: bool = Field(description="True when the budgets could not be read")
    rules: list[RuleLimits]


def _rule(entry: RuleBudgets) -> RuleLimits:
    r = entry.rule
    return RuleLimits(
        policy=r.policy,
        rule=r.name,
        priority=r.priority,
        failure_mode=r.failure_mode.value,
        key=r.key_kind if r.header_name is None else f"header:{r.header_name}",
        fallback=r.policy == DEFAULT_POLICY,
        match=RuleMatch(
            versions=sorted(r.versions or ()),
            paths=list(r.paths),
            methods=sorted(r.methods or ()),
            roles=sorted(r.roles or ()),
        ),
        limits=[
            LimitBudget(
                name=b.limit.name,
                unit=b.limit.unit,
                quantity=b.limit.quantity,
                window=b.limit.window,
                window_seconds=b.limit.window_s,
                burst_capacity=b.limit.capacity,
                remaining=b.remaining,
                reset_seconds=b.reset_seconds,
            )
            for b in entry.budgets
        ],
    )


@bp.get("/me")
@require_auth(scopes=["limits:read"], allow_readonly=True)
@operation(
    "The caller's effective rate limits and remaining budgets",
    tags=["limits"],
    response=LimitsMe,
    auth=True,
    description="Every enforced rule that can limit the caller on some route, with the "
    "budget left under the caller's key. Shadow policies are not listed. Reading does not "
    "consume anything beyond this request itself.",
)
def limits_me() -> Response:
    """The caller's limits."""
    report = effective_limits(
        limiter(),
        caller=current_caller(),
        ip=client_ip.request_bucket(),
        headers=request.headers,
    )
    return ok(
        LimitsMe(
            generation=report.generation,
            degraded=report.degraded,
            rules=[_rule(entry) for entry in report.rules],
        )
    )
