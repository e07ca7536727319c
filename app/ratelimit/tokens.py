"""AI token budgets: reserve before calling a provider, settle with the real usage after.

    reservation = reserve_tokens(caller, estimated)    # raises AI_TOKEN_LIMIT (429)
    ... call the provider ...
    settle(reservation, actual)                        # refunds or charges the difference

A token limit is the same GCRA as request limits with cost n: a bucket of `tokens`
refilled continuously at tokens/window, so a budget never "forgets to reset" (the
LiteLLM complaint, BerriAI/litellm#10555). Reserving is atomic across every matching limit
and every worker; settling never fails a request (usage above the reservation is still
charged, so an overdrawn budget blocks the next calls until it has refilled).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, NamedTuple

from flask import Flask, current_app, has_request_context, request

from app.auth.caller import Caller
from app.core import client_ip
from app.core.errors import ErrorCode
from app.core.errors.exceptions import DependencyUnavailable, RateLimited
from app.core.warnings import warn
from app.ratelimit import keys
from app.ratelimit.compiler import MICRO_USD
from app.ratelimit.model import CompiledLimit, CompiledRule
from app.ratelimit.service import ENFORCED, caller_roles
from app.ratelimit.stage import DEGRADED_WARNING, limiter, version_of
from app.ratelimit.store import StoreUnavailable

log = logging.getLogger("structured_api.ratelimit")
_CONSUME = 1
_SETTLE = 2


class _Row(NamedTuple):
    key: str
    limit: CompiledLimit
    group: int


Budget = Literal["tokens", "usd"]


def _limits(rule: CompiledRule, unit: Budget) -> tuple[CompiledLimit, ...]:
    return rule.token_limits if unit == "tokens" else rule.money_limits


def _budgets(rules: Sequence[CompiledRule], unit: Budget = "tokens") -> bool:
    return any(_limits(r, unit) for r in rules)


@dataclass(frozen=True, slots=True)
class Reservation:
    """Tokens taken from every matching budget; hand it back to `settle`."""

    tokens: int
    entries: tuple[tuple[str, float, float], ...]  # (key, interval_ms, horizon_ms)
    degraded: bool = False

    @property
    def limited(self) -> bool:
        """True when at least one budget was charged."""
        return bool(self.entries)


def budgeted(unit: Budget, *, app: Flask | None = None) -> bool:
    """Whether some rule of the current config has a `unit` budget (else reserving it is
    a no-op, and a caller may skip working out how much to reserve)."""
    return unit in limiter(app).matcher().budgets


def reserve_tokens(
    caller: Caller,
    n: int,
    *,
    path: str | None = None,
    method: str | None = None,
    ip: str | None = None,
    app: Flask | None = None,
) -> Reservation:
    """Take `n` tokens from every token budget matching the request (or the given route).

    Outside a request (a Celery job) pass the `path` and `method` of the request that
    created the job, so the same rules match.
    """
    return _reserve(caller, n, "tokens", path=path, method=method, ip=ip, app=app)


def reserve_money(
    caller: Caller,
    micro_usd: int,
    *,
    path: str | None = None,
    method: str | None = None,
    ip: str | None = None,
    app: Flask | None = None,
) -> Reservation:
    """Take `micro_usd` (millionths of a dollar) from every money budget (`usd` limits)
    matching the request; 429 `AI_BUDGET_EXCEEDED` when one cannot cover it. Settle with
    `settle(reservation, actual_micro_usd)`."""
    return _reserve(caller, micro_usd, "usd", path=path, method=method, ip=ip, app=app)


def _reserve(
    caller: Caller,
    n: int,
    unit: Budget,
    *,
    path: str | None,
    method: str | None,
    ip: str | None,
    app: Flask | None,
) -> Reservation:
    if n < 0:
        raise ValueError("n must be >= 0")
    rl = limiter(app)
    matcher = rl.matcher()
    if unit not in matcher.budgets:  # no rule of this config has such a budget: no plan
        return Reservation(tokens=n, entries=())
    in_request = has_request_context()
    if in_request:
        path = request.path if path is None else path
        method = request.method if method is None else method
        ip = client_ip.request_bucket() if ip is None else ip
    versions = (app or current_app).extensions.get("api_versions", {})
    roles = caller_roles(caller)
    plan = matcher.plan(
        method=method or "", path=path or "", version=version_of(path or "", versions), roles=roles
    )
    headers: keys.HeaderLookup = request.headers if in_request else {}
    # Group 0 holds the enforced budgets; each shadow policy with a budget gets the next
    # group number and its would-reject counter at KEYS[n + group].
    groups = [(ENFORCED, plan.enforced)]
    groups += [(g, rs) for g, rs in enumerate((rs for rs in plan.shadow if _budgets(rs, unit)), 1)]
    shadow_keys = [keys.shadow_key(rs[0].policy) for g, rs in groups if g != ENFORCED]
    layout: list[_Row] = []
    args: list[float | int] = []
    for group, rules in groups:
        for rule in rules:
            who = keys.subject(rule, caller=caller, ip=ip or "job", roles=roles, headers=headers)
            for lim in _limits(rule, unit):
                layout.append(_Row(keys.limit_key(rule, lim, who), lim, group))
                args.extend((lim.interval_ms, lim.horizon_ms, n, group, _CONSUME))
    if not layout:
        return Reservation(tokens=n, entries=())
    try:
        rows = rl.store.evaluate(
            [r.key for r in layout],
            args,
            shadow_keys=shadow_keys,
            shadow_ttl=keys.SHADOW_TTL_SECONDS,
        )
    except StoreUnavailable as exc:
        if plan.fail_closed:
            raise DependencyUnavailable(
                ErrorCode.RATE_LIMITER_UNAVAILABLE.description,
                code=ErrorCode.RATE_LIMITER_UNAVAILABLE,
            ) from exc
        if in_request:
            warn(DEGRADED_WARNING, "Token budgets could not be checked; served without them.")
        return Reservation(tokens=n, entries=(), degraded=True)
    passed: dict[int, bool] = {}
    worst: tuple[_Row, int, int] | None = None  # row, ms until it fits, tokens remaining
    for row, (ok, remaining, _, retry_ms) in zip(layout, rows, strict=True):
        passed[row.group] = passed.get(row.group, True) and bool(ok)
        if row.group == ENFORCED and not ok and (worst is None or retry_ms > worst[1]):
            worst = (row, retry_ms, remaining)
    if worst is not None:
        row, retry_ms, remaining = worst
        if unit == "usd":
            raise _money_refused(row.limit, n, retry_ms, remaining)
        raise RateLimited(
            f"AI token budget {row.limit.name} exhausted.",
            code=ErrorCode.AI_TOKEN_LIMIT,
            retry_after=max(1, math.ceil(retry_ms / 1000)),
            details={
                "limit": row.limit.name,
                "requested_tokens": n,
                "remaining_tokens": max(0, remaining),
                "capacity_tokens": row.limit.capacity,
                "never_fits": n > row.limit.capacity,
            },
        )
    entries = tuple(
        (r.key, r.limit.interval_ms, r.limit.horizon_ms) for r in layout if passed[r.group]
    )
    return Reservation(tokens=n, entries=entries)


def _usd(micro: int) -> str:
    return f"{Decimal(micro) / MICRO_USD:.6f}"


def _money_refused(limit: CompiledLimit, n: int, retry_ms: int, remaining: int) -> RateLimited:
    """429 `AI_BUDGET_EXCEEDED`: when the budget covers the call again, and by how much."""
    retry = max(1, math.ceil(retry_ms / 1000))
    resets_at = datetime.now(UTC) + timedelta(seconds=retry)
    never = n > limit.capacity
    when = "never (the call costs more than the whole budget)" if never else (
        f"at {resets_at.strftime('%Y-%m-%dT%H:%M:%SZ')} (in {retry} s)"
    )  # fmt: skip
    return RateLimited(
        f"AI spend budget {limit.name} (${_usd(limit.capacity)} per {limit.window}) is "
        f"exhausted; it covers this call again {when}.",
        code=ErrorCode.AI_BUDGET_EXCEEDED,
        retry_after=retry,
        details={
            "limit": limit.name,
            "budget_usd": _usd(limit.capacity),
            "window": limit.window,
            "requested_usd": _usd(n),
            "remaining_usd": _usd(max(0, remaining)),
            "resets_at": None if never else resets_at.isoformat(),
            "never_fits": never,
        },
    )


def settle(reservation: Reservation, actual: int, *, app: Flask | None = None) -> None:
    """Charge `actual - reserved` tokens (a refund when negative); never raises on Redis."""
    delta = actual - reservation.tokens
    if delta == 0 or not reservation.entries:
        return
    args: list[float | int] = []
    for _, interval, horizon in reservation.entries:
        args.extend((interval, horizon, delta, ENFORCED, _SETTLE))
    try:
        limiter(app).store.evaluate([key for key, _, _ in reservation.entries], args)
    except StoreUnavailable:
        # The reservation stands: better a slightly wrong budget than a failed response.
        log.warning("token settlement of %+d lost: rate-limit store unavailable", delta)
