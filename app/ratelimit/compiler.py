"""Turn validated `RateLimitPolicySpec`s into compiled, immutable matchers (pure functions)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Final

from app.core.specs.common import duration_seconds
from app.core.specs.rate_limit import FailureMode, Limit, LimitMode, RateLimitPolicySpec, Rule
from app.ratelimit.model import (
    DEFAULT_POLICY,
    CompiledLimit,
    CompiledPolicies,
    CompiledPolicy,
    CompiledRule,
    KeyKind,
)

#: Money budgets count in millionths of a US dollar.
MICRO_USD: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class DefaultLimit:
    """The settings-driven limit applied when no policy matches a request."""

    requests: int
    window: str
    burst: int | None = None
    failure_mode: FailureMode = FailureMode.OPEN


def path_regex(pattern: str) -> re.Pattern[str]:
    """Compile a path pattern: `*` or `{name}` is one segment, a final `*` segment the rest.

    `/v1/notes/{id}` and `/v1/notes/*` match `/v1/notes/7`; `/v1/ai/*` matches every
    path below `/v1/ai/`; `gen*` inside a segment matches `generate`.
    """
    segments = pattern.split("/")
    out: list[str] = []
    for i, segment in enumerate(segments):
        if segment == "*" and i == len(segments) - 1 and i > 0:
            out.append(".*")
        elif re.fullmatch(r"\{[^/{}]*\}|\*", segment):
            out.append("[^/]+")
        else:
            out.append("[^/]*".join(re.escape(part) for part in segment.split("*")))
    return re.compile("/".join(out))


def _paths_regex(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{path_regex(p).pattern})" for p in patterns))


def _limit(spec: Limit, *, index: int, prefix: str, duplicate_window: bool) -> CompiledLimit:
    window_s = duration_seconds(spec.window)
    if spec.requests is not None:
        quantity, unit, tag = spec.requests, "requests", "r"
        # Capacity = what may be sent at once from idle. Unset burst gives the whole
        # window's quota at once (what `N per window` means to most clients); `burst: b`
        # allows 1 + b at once, then paces at window/N, like nginx `limit_req burst=b`
        # (b = 0 is strict pacing: exactly N in any window of that length).
        capacity = spec.requests if spec.burst is None else spec.burst + 1
    elif spec.tokens is not None:
        quantity, unit, tag = spec.tokens, "tokens", "t"
        capacity = spec.tokens  # a token budget is spendable in one go
    else:
        assert spec.usd is not None  # the spec validator guarantees exactly one
        quantity, unit, tag = int(Decimal(spec.usd) * MICRO_USD), "usd", "u"
        capacity = quantity  # like a token budget: spendable in one go
    name = f"{prefix}.{spec.window}" + (f".{index}" if duplicate_window else "")
    interval_ms = window_s * 1000.0 / quantity
    return CompiledLimit(
        index=index,
        unit=unit,  # type: ignore[arg-type]
        quantity=quantity,
        window=spec.window,
        window_s=window_s,
        capacity=capacity,
        name=name,
        key_part=f"{index}:{quantity}{tag}{window_s}s{capacity}c",
        interval_ms=interval_ms,
        horizon_ms=capacity * interval_ms,
    )


def _methods(methods: list[str]) -> frozenset[str] | None:
    """The declared methods, with HEAD wherever GET is: a HEAD request runs the GET view.

    Flask and werkzeug answer HEAD with the GET view (RFC 9110 section 9.3.2: the same
    response without content), so a GET-only rule that let HEAD through would let a
    client spend the same work outside the limit. Both count against the same bucket:
    the Redis key names the rule, never the method.
    """
    declared = frozenset(methods)
    if "GET" in declared:
        declared |= {"HEAD"}
    return declared or None


def _key_kind(key: str) -> tuple[KeyKind, str | None]:
    if key.startswith("header:"):
        return "header", key.split(":", 1)[1].lower()
    return key, None  # type: ignore[return-value]  # KEY_PATTERN allows only KeyKind values


def compile_rule(
    rule: Rule,
    *,
    policy: str,
    priority: int,
    mode: LimitMode,
    failure_mode: FailureMode,
) -> CompiledRule:
    """Compile one rule of `policy`."""
    windows = [limit.window for limit in rule.limits]
    limits = [
        _limit(
            spec,
            index=i,
            prefix=f"{policy}.{rule.name}",
            duplicate_window=windows.count(spec.window) > 1,
        )
        for i, spec in enumerate(rule.limits)
    ]
    kind, header = _key_kind(rule.key)
    m = rule.match
    return CompiledRule(
        policy=policy,
        name=rule.name,
        priority=priority,
        mode=mode,
        failure_mode=failure_mode,
        versions=frozenset(m.versions) or None,
        methods=_methods(list(m.methods)),
        roles=frozenset(m.roles) or None,
        path_regex=_paths_regex(list(m.paths)),
        paths=tuple(m.paths),
        key_kind=kind,
        header_name=header,
        request_limits=tuple(lim for lim in limits if lim.unit == "requests"),
        token_limits=tuple(lim for lim in limits if lim.unit == "tokens"),
        exempt_roles=frozenset(rule.exempt.roles),
        money_limits=tuple(lim for lim in limits if lim.unit == "usd"),
    )


def compile_policy(name: str, spec: RateLimitPolicySpec) -> CompiledPolicy:
    """Compile one policy."""
    rules = tuple(
        compile_rule(
            rule,
            policy=name,
            priority=spec.priority,
            mode=spec.mode,
            failure_mode=spec.failureMode,
        )
        for rule in spec.rules
    )
    return CompiledPolicy(
        name=name,
        priority=spec.priority,
        mode=spec.mode,
        failure_mode=spec.failureMode,
        rules=rules,
    )


def compile_default(default: DefaultLimit) -> CompiledRule:
    """The built-in rule applied when no enforced policy matches: per caller, else per IP."""
    spec = Limit(requests=default.requests, window=default.window, burst=default.burst)
    return CompiledRule(
        policy=DEFAULT_POLICY,
        name="global",
        priority=-1,
        mode=LimitMode.ENFORCE,
        failure_mode=default.failure_mode,
        versions=None,
        methods=None,
        roles=None,
        path_regex=None,
        paths=(),
        key_kind="user",
        header_name=None,
        request_limits=(
            _limit(spec, index=0, prefix=f"{DEFAULT_POLICY}.global", duplicate_window=False),
        ),
        token_limits=(),
        exempt_roles=frozenset(),
    )


def compile_policies(
    specs: Mapping[str, RateLimitPolicySpec],
    *,
    generation: int = 0,
    default: DefaultLimit | None = None,
) -> CompiledPolicies:
    """Compile every policy; one broken policy is reported in `errors`, not fatal."""
    compiled: list[CompiledPolicy] = []
    errors: dict[str, str] = {}
    for name, spec in specs.items():
        if name == DEFAULT_POLICY:
            errors[name] = f"the name {DEFAULT_POLICY!r} is reserved for the built-in limit"
            continue
        try:
            compiled.append(compile_policy(name, spec))
        except (ValueError, re.error) as exc:  # defensive: specs are validated upstream
            errors[name] = str(exc)
    order = sorted(compiled, key=lambda p: (-p.priority, p.name))
    return CompiledPolicies(
        generation=generation,
        enforced=tuple(p for p in order if p.mode is LimitMode.ENFORCE),
        shadow=tuple(p for p in order if p.mode is LimitMode.SHADOW),
        default=compile_default(default) if default is not None else None,
        errors=errors,
    )
