"""Read-only view of the limiter: a caller's effective limits and the budget left."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from app.auth.caller import Caller
from app.ratelimit import keys
from app.ratelimit.model import CompiledLimit, CompiledRule
from app.ratelimit.service import ENFORCED, RateLimiter, caller_roles
from app.ratelimit.store import StoreUnavailable

_PEEK: Final = 0  # write flag: look only


@dataclass(frozen=True, slots=True)
class Budget:
    """One limit and what is left of it for the caller (None when Redis is unreachable)."""

    limit: CompiledLimit
    remaining: int | None
    reset_seconds: int | None


@dataclass(frozen=True, slots=True)
class RuleBudgets:
    """A rule that can limit the caller, and its budgets."""

    rule: CompiledRule
    budgets: list[Budget] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class EffectiveLimits:
    """Everything that can limit a caller, grouped by policy in priority order."""

    generation: int
    degraded: bool
    rules: list[RuleBudgets]


def _can_limit(rule: CompiledRule, roles: frozenset[str]) -> bool:
    return (rule.roles is None or bool(rule.roles & roles)) and not rule.exempts(roles)


def effective_limits(
    rl: RateLimiter, *, caller: Caller, ip: str, headers: keys.HeaderLookup
) -> EffectiveLimits:
    """Every enforced rule that can apply to `caller` (any route), with budgets left.

    Shadow policies are not listed: they are invisible to clients by design. Reading
    costs one script call and consumes nothing.
    """
    matcher = rl.matcher()
    roles = caller_roles(caller)
    candidates = [r for p in matcher.policies.enforced for r in p.rules if _can_limit(r, roles)]
    if matcher.policies.default is not None:
        candidates.append(matcher.policies.default)
    slots: list[tuple[RuleBudgets, CompiledLimit]] = []
    key_list: list[str] = []
    args: list[float | int] = []
    rules: list[RuleBudgets] = []
    for rule in candidates:
        entry = RuleBudgets(rule)
        rules.append(entry)
        who = keys.subject(rule, caller=caller, ip=ip, roles=roles, headers=headers)
        for lim in (*rule.request_limits, *rule.token_limits, *rule.money_limits):
            key_list.append(keys.limit_key(rule, lim, who))
            args.extend((lim.interval_ms, lim.horizon_ms, 0, ENFORCED, _PEEK))
            slots.append((entry, lim))
    degraded = False
    rows: list[tuple[int, int, int, int]] = []
    if key_list:
        try:
            rows = rl.store.evaluate(key_list, args)
        except StoreUnavailable:
            degraded = True
    for i, (entry, lim) in enumerate(slots):
        if degraded:
            entry.budgets.append(Budget(lim, None, None))
        else:
            _, remaining, reset_ms, _ = rows[i]
            entry.budgets.append(Budget(lim, remaining, max(0, -(-reset_ms // 1000))))
    return EffectiveLimits(generation=matcher.generation, degraded=degraded, rules=rules)
