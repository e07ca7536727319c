"""Spend: what a call may cost before it runs, and what calls did cost, added up.

Money budgets are `usd` limits of a `RateLimitPolicy` (docs/rate-limiting.md), reserved
and settled like token budgets (app/ratelimit/tokens.py) in millionths of a dollar: the
most a call can cost (estimated prompt plus `max_tokens`, at the dearest target's prices)
before it runs, its real cost after. Sums come from the history rows (`ai_generation`,
one per call, its cost from the provider's usage), so `GET /v1/ai/spend`, the admin
view and `AIProvider.status.usage` add up exactly what `GET /v1/ai/history` lists.
Flask-free: the operator uses `provider_usage`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Final, Literal

from sqlalchemy import Connection, text
from sqlmodel import Session

from app.ai.registry import Target
from app.ai.tokens import estimate_input
from app.ai.types import ChatRequest

MICRO: Final = Decimal(1_000_000)
#: The longest range one spend query may cover.
MAX_DAYS: Final = 366
GroupBy = Literal["user", "api_key"]


def micro_usd(cost: Decimal) -> int:
    """A cost in whole millionths of a dollar, rounded up (a budget never under-counts)."""
    return math.ceil(cost * MICRO)


def worst_cost(request: ChatRequest, targets: Iterable[Target]) -> Decimal:
    """The most `request` can cost on any of `targets`: estimated input plus `max_tokens`."""
    tokens_in = estimate_input(request)
    return max((t.price.cost(tokens_in, request.max_tokens) for t in targets), default=Decimal(0))


@dataclass(frozen=True, slots=True)
class Totals:
    """Calls, tokens and cost of a group of history rows."""

    calls: int
    input_tokens: int
    output_tokens: int
    cost: Decimal

    def public(self) -> dict[str, Any]:
        """JSON form: the cost as a decimal string, never a float."""
        return {
            "calls": self.calls,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": format(self.cost.normalize(), "f") if self.cost else "0",
        }


def _totals(row: Any) -> Totals:
    return Totals(
        int(row.calls), int(row.input_tokens), int(row.output_tokens), Decimal(row.cost or 0)
    )


_SUMS: Final = (
    "count(*) AS calls, coalesce(sum(input_tokens), 0) AS input_tokens, "
    "coalesce(sum(output_tokens), 0) AS output_tokens, coalesce(sum(cost_usd), 0) AS cost"
)
_DAY: Final = "(created_at AT TIME ZONE 'UTC')::date"
_BY_DAY_MODEL: Final = text(
    f"SELECT {_DAY} AS day, model, {_SUMS} FROM ai_generation "
    "WHERE owner = :owner AND created_at >= :since AND created_at < :until "
    "GROUP BY 1, 2 ORDER BY 1, 2"
)
_BY_CALLER: Final = {
    "user": text(
        f"SELECT user_id AS who, {_SUMS} FROM ai_generation "
        "WHERE created_at >= :since AND created_at < :until "
        "GROUP BY 1 ORDER BY cost DESC, who LIMIT :limit"
    ),
    "api_key": text(
        f"SELECT api_key_id AS who, user_id, {_SUMS} FROM ai_generation "
        "WHERE created_at >= :since AND created_at < :until AND api_key_id IS NOT NULL "
        "GROUP BY 1, 2 ORDER BY cost DESC, who LIMIT :limit"
    ),
}
_BY_PROVIDER: Final = text(
    f"SELECT provider, {_SUMS} FROM ai_generation "
    "WHERE created_at >= :since AND provider IS NOT NULL GROUP BY 1"
)


def day_bounds(since: date, until: date) -> tuple[datetime, datetime]:
    """UTC instants from the start of `since` to the end of `until` (both days included)."""
    start = datetime(since.year, since.month, since.day, tzinfo=UTC)
    end = datetime(until.year, until.month, until.day, tzinfo=UTC) + timedelta(days=1)
    return start, end


def caller_spend(*, session: Session, owner: str, since: date, until: date) -> dict[str, Any]:
    """`owner`'s spend per UTC day and model, with the total."""
    start, end = day_bounds(since, until)
    rows = session.connection().execute(
        _BY_DAY_MODEL, {"owner": owner, "since": start, "until": end}
    )
    days: list[dict[str, Any]] = []
    total = Totals(0, 0, 0, Decimal(0))
    for row in rows:
        sums = _totals(row)
        total = Totals(
            total.calls + sums.calls,
            total.input_tokens + sums.input_tokens,
            total.output_tokens + sums.output_tokens,
            total.cost + sums.cost,
        )
        days.append({"day": row.day.isoformat(), "model": row.model, **sums.public()})
    return {
        "since": since.isoformat(),
        "until": until.isoformat(),
        "total": total.public(),
        "days": days,
    }


def spend_by(
    *, session: Session, group_by: GroupBy, since: date, until: date, limit: int
) -> list[dict[str, Any]]:
    """Spend per user or per API key (biggest first) over whole UTC days."""
    start, end = day_bounds(since, until)
    rows = session.connection().execute(
        _BY_CALLER[group_by], {"since": start, "until": end, "limit": limit}
    )
    out = []
    for row in rows:
        entry: dict[str, Any] = {group_by: row.who}
        if group_by == "api_key":
            entry["user"] = row.user_id
        out.append({**entry, **_totals(row).public()})
    return out


def provider_usage(connection: Connection, *, since: datetime) -> dict[str, dict[str, Any]]:
    """Calls, tokens and cost per provider since `since` (for `AIProvider.status`)."""
    rows = connection.execute(_BY_PROVIDER, {"since": since})
    return {row.provider: _totals(row).public() for row in rows}
