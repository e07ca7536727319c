"""Compiled rate-limit policies: plain immutable objects the request path reads.

Compilation (see `compiler.py`) turns validated `RateLimitPolicySpec`s into these once
per config generation, so a request only does dict lookups, a few regex matches (cached
per method/path/version/roles) and one Redis script call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final, Literal

from app.core.specs.rate_limit import FailureMode, LimitMode

#: `usd` limits count in millionths of a US dollar (micro-USD).
Unit = Literal["requests", "tokens", "usd"]
KeyKind = Literal["user", "apiKey", "ip", "role", "global", "header"]

#: Pseudo-role held by unauthenticated callers, so a rule can target them (`roles: [anonymous]`).
ANONYMOUS_ROLE: Final = "anonymous"
#: Name of the built-in policy applied when no policy matches (settings `RATE_LIMIT_DEFAULT_*`).
DEFAULT_POLICY: Final = "default"


@dataclass(frozen=True, slots=True)
class CompiledLimit:
    """One GCRA limit: `quantity` units per `window_s`, at most `capacity` at once.

    GCRA keeps one timestamp per key, the theoretical arrival time (TAT). A unit costs
    `interval_ms` (= window / quantity); a request of cost n conforms when
    max(TAT, now) + n * interval <= now + horizon, with horizon = capacity * interval.
    """

    index: int
    unit: Unit
    quantity: int
    window: str  # as written in the spec (`1m`)
    window_s: int
    capacity: int
    name: str  # item name in RateLimit-Policy / RateLimit (IETF draft), e.g. "free.gen.1m"
    key_part: str  # part of the Redis key; changes when the limit's numbers change
    interval_ms: float  # milliseconds one unit costs (the GCRA emission interval)
    horizon_ms: float  # milliseconds of credit a full bucket holds (capacity * interval)


@dataclass(frozen=True, slots=True)
class CompiledRule:
    """A rule with its matchers pre-built; `None` matchers match everything."""

    policy: str
    name: str
    priority: int
    mode: LimitMode
    failure_mode: FailureMode
    versions: frozenset[str] | None
    methods: frozenset[str] | None
    roles: frozenset[str] | None
    path_regex: re.Pattern[str] | None
    paths: tuple[str, ...]  # the patterns path_regex was built from
    key_kind: KeyKind
    header_name: str | None  # for `header:<name>` keys, lower-cased
    request_limits: tuple[CompiledLimit, ...]
    token_limits: tuple[CompiledLimit, ...]
    exempt_roles: frozenset[str]
    #: AI spend budgets, in micro-USD (reserve, then settle, like token budgets).
    money_limits: tuple[CompiledLimit, ...] = ()

    def matches(
        self, *, method: str, path: str, version: str | None, roles: frozenset[str]
    ) -> bool:
        """True when the request falls under this rule (exemptions aside)."""
        if self.methods is not None and method not in self.methods:
            return False
        if self.versions is not None and version not in self.versions:
            return False
        if self.roles is not None and not (self.roles & roles):
            return False
        return self.path_regex is None or self.path_regex.fullmatch(path) is not None

    def exempts(self, roles: frozenset[str]) -> bool:
        """True when one of `roles` is exempt from this rule."""
        return bool(self.exempt_roles & roles)


@dataclass(frozen=True, slots=True)
class CompiledPolicy:
    """A policy: its mode, failure mode, priority and rules in declaration order."""

    name: str
    priority: int
    mode: LimitMode
    failure_mode: FailureMode
    rules: tuple[CompiledRule, ...]


@dataclass(frozen=True, slots=True)
class Plan:
    """What applies to one kind of request: enforced rules and shadow rules by policy."""

    enforced: tuple[CompiledRule, ...]
    shadow: tuple[tuple[CompiledRule, ...], ...]
    fail_closed: bool
    exempted: tuple[CompiledRule, ...] = ()  # winning rules the caller is exempt from
    policy_header: str = ""  # `RateLimit-Policy` value; the same for every such request

    @property
    def empty(self) -> bool:
        """True when nothing limits (or exempts) the request."""
        return not self.enforced and not self.shadow and not self.exempted


EMPTY_PLAN: Final = Plan(enforced=(), shadow=(), fail_closed=False, policy_header="")


@dataclass(frozen=True, slots=True)
class CompiledPolicies:
    """Every policy of one config generation, ready for matching."""

    generation: int
    enforced: tuple[CompiledPolicy, ...]  # priority descending, then name
    shadow: tuple[CompiledPolicy, ...]
    default: CompiledRule | None
    errors: dict[str, str] = field(default_factory=dict)  # policy -> why it was not compiled
