"""Which rules apply to a request: priority, exemptions, shadow policies, the default.

Semantics (docs/rate-limiting.md, "Priority"):

* A policy *applies* to a request when one of its rules matches (version, path, method,
  role); exemptions do not affect whether it applies.
* Among the Enforce policies that apply, the highest `priority` wins and only its rules
  limit the request; equal priorities all apply (every limit must admit). So a premium
  policy at priority 200 replaces the free tier at 100 instead of stacking on it.
* Within the winning policies every matching rule applies, except rules that exempt one
  of the caller's roles: an exempt caller is not limited by that rule and does not fall
  through to a lower-priority policy.
* Shadow policies never displace anything: each one that applies is evaluated on its own,
  as if it were enforced, and only counts what it would have rejected.
* When no Enforce policy applies, the settings' default limit does (keyed per caller).
"""

from __future__ import annotations

import threading
from typing import Final

from app.core.specs.rate_limit import FailureMode
from app.ratelimit.headers import policy_header
from app.ratelimit.model import EMPTY_PLAN, CompiledPolicies, CompiledPolicy, CompiledRule, Plan

# Plans are cached per (method, path, version, roles). Paths carry ids, so the cache is
# bounded and simply dropped when full: rebuilding a plan costs microseconds.
MAX_CACHED_PLANS: Final = 4096
PlanKey = tuple[str, str, str | None, frozenset[str]]


def _matching_rules(
    policy: CompiledPolicy, method: str, path: str, version: str | None, roles: frozenset[str]
) -> list[CompiledRule]:
    return [
        r for r in policy.rules if r.matches(method=method, path=path, version=version, roles=roles)
    ]


def build_plan(
    policies: CompiledPolicies,
    *,
    method: str,
    path: str,
    version: str | None,
    roles: frozenset[str],
) -> Plan:
    """The rules limiting one request (uncached; see `Matcher.plan`)."""
    enforced: list[CompiledRule] = []
    exempted: list[CompiledRule] = []
    winning_priority: int | None = None
    for policy in policies.enforced:  # sorted by priority, highest first
        if winning_priority is not None and policy.priority < winning_priority:
            break
        rules = _matching_rules(policy, method, path, version, roles)
        if rules:
            winning_priority = policy.priority
            for rule in rules:
                (exempted if rule.exempts(roles) else enforced).append(rule)
    if winning_priority is None and policies.default is not None:
        enforced.append(policies.default)
    shadow: list[tuple[CompiledRule, ...]] = []
    for policy in policies.shadow:
        rules = [
            r for r in _matching_rules(policy, method, path, version, roles) if not r.exempts(roles)
        ]
        if rules:
            shadow.append(tuple(rules))
    if not enforced and not shadow and not exempted:
        return EMPTY_PLAN
    return Plan(
        enforced=tuple(enforced),
        shadow=tuple(shadow),
        fail_closed=any(r.failure_mode is FailureMode.CLOSED for r in enforced),
        exempted=tuple(exempted),
        policy_header=policy_header(lim for r in enforced for lim in r.request_limits),
    )


def _budget_units(policies: CompiledPolicies) -> frozenset[str]:
    rules = [r for p in (*policies.enforced, *policies.shadow) for r in p.rules]
    if policies.default is not None:
        rules.append(policies.default)
    return frozenset(
        unit
        for unit, present in (
            ("tokens", any(r.token_limits for r in rules)),
            ("usd", any(r.money_limits for r in rules)),
        )
        if present
    )


class Matcher:
    """Compiled policies plus a bounded cache of plans; one per config generation."""

    __slots__ = ("_cache", "_lock", "budgets", "policies")

    def __init__(self, policies: CompiledPolicies) -> None:
        self.policies = policies
        self._cache: dict[PlanKey, Plan] = {}
        self._lock = threading.Lock()
        #: The budget units ("tokens", "usd") some rule of this generation carries: an AI
        #: call reserves nothing, and plans nothing, for a unit no rule has.
        self.budgets: frozenset[str] = _budget_units(policies)

    @property
    def generation(self) -> int:
        """The config generation these policies were compiled from."""
        return self.policies.generation

    def plan(self, *, method: str, path: str, version: str | None, roles: frozenset[str]) -> Plan:
        """The (cached) plan for a request."""
        key = (method, path, version, roles)
        found = self._cache.get(key)
        if found is not None:
            return found
        plan = build_plan(self.policies, method=method, path=path, version=version, roles=roles)
        with self._lock:
            if len(self._cache) >= MAX_CACHED_PLANS:
                self._cache.clear()
            self._cache[key] = plan
        return plan
