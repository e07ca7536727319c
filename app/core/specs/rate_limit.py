"""`RateLimitPolicy`: request and AI-token limits matched on version, path, method, role."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from app.core.specs.common import Duration, ObjectName, SpecModel, UsdAmount, VersionString

HttpMethod = Literal["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"]
KEY_PATTERN = r"^(user|apiKey|ip|role|global|header:[A-Za-z0-9-]{1,64})$"
#: A path pattern: a literal path where `*` matches one segment and a trailing `*` the rest.
PathPattern = Annotated[str, StringConstraints(pattern=r"^/[A-Za-z0-9_./*{}-]*$", max_length=256)]


class LimitMode(StrEnum):
    """Enforce rejects; Shadow only counts what it would have rejected."""

    ENFORCE = "Enforce"
    SHADOW = "Shadow"


class FailureMode(StrEnum):
    """What to do when Redis cannot be reached."""

    OPEN = "Open"
    CLOSED = "Closed"


class Match(SpecModel):
    """Which requests a rule applies to; an empty list matches everything."""

    versions: list[VersionString] = Field(default_factory=list, description="API versions")
    paths: list[PathPattern] = Field(default_factory=list, description="Path patterns")
    methods: list[HttpMethod] = Field(default_factory=list, description="HTTP methods")
    roles: list[str] = Field(default_factory=list, description="Caller roles (any of)")


class Limit(SpecModel):
    """One limit: `requests`, `tokens` or `usd` per `window`."""

    requests: int | None = Field(
        default=None, ge=1, le=10_000_000, description="Requests per window"
    )
    tokens: int | None = Field(
        default=None,
        ge=1,
        le=10_000_000_000,
        description="AI tokens per window (reserve, then settle)",
    )
    usd: UsdAmount | None = Field(
        default=None,
        description='AI spend in US dollars per window, a decimal string such as "5.00" '
        "(reserve the most a call can cost, then settle with its real cost)",
    )
    window: Duration = Field(description="Window length, e.g. 1m, 1h, 1d")
    burst: int | None = Field(
        default=None,
        ge=0,
        le=10_000_000,
        description="Extra requests allowed at once beyond one, then paced at window/requests "
        "(GCRA burst); unset = the whole window's quota at once",
    )

    @model_validator(mode="after")
    def _exactly_one_quantity(self) -> Self:
        if [self.requests, self.tokens, self.usd].count(None) != 2:
            raise ValueError("set exactly one of requests, tokens or usd")
        if self.requests is None and self.burst is not None:
            raise ValueError("burst applies to request limits only")
        return self


class Exempt(SpecModel):
    """Callers the rule never limits."""

    roles: list[str] = Field(default_factory=list, description="Roles exempt from the rule")


class Rule(SpecModel):
    """A named rule: what it matches, how callers are keyed, and its limits."""

    name: ObjectName = Field(description="Unique within the policy")
    match: Match = Field(default_factory=Match, description="Which requests it applies to")
    key: Annotated[str, StringConstraints(pattern=KEY_PATTERN)] = Field(
        default="user", description="user | apiKey | ip | role | global | header:<name>"
    )
    limits: list[Limit] = Field(min_length=1, max_length=10, description="All must admit")
    exempt: Exempt = Field(default_factory=Exempt, description="Exemptions")


class RateLimitPolicySpec(SpecModel):
    """Spec of a `RateLimitPolicy` resource."""

    mode: LimitMode = Field(default=LimitMode.ENFORCE, description="Enforce or Shadow")
    failureMode: FailureMode = Field(
        default=FailureMode.OPEN, description="Open (serve, warn) or Closed (503) without Redis"
    )
    priority: int = Field(
        default=100, ge=0, le=10_000, description="Higher wins among overlapping policies"
    )
    rules: list[Rule] = Field(min_length=1, max_length=50, description="The rules")

    @model_validator(mode="after")
    def _unique_rule_names(self) -> Self:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("rule names must be unique within a policy")
        return self


LIMIT_CEL_RULES = [
    {
        "rule": "(has(self.requests) ? 1 : 0) + (has(self.tokens) ? 1 : 0) + "
        "(has(self.usd) ? 1 : 0) == 1",
        "message": "set exactly one of requests, tokens or usd",
    },
    {
        "rule": "has(self.requests) || !has(self.burst)",
        "message": "burst applies to request limits only",
    },
]
POLICY_CEL_RULES = [
    {
        "rule": "self.rules.all(r, self.rules.exists_one(s, s.name == r.name))",
        "message": "rule names must be unique within a policy",
    },
]
