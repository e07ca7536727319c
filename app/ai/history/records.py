"""Generation history: what is kept of prompts and answers, recording, listing, purging."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, Final

from psycopg2 import errorcodes
from sqlalchemy import Connection, DateTime, delete, insert, literal, text, tuple_
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.ai.models import AIGeneration, HistoryItem, HistoryQuery, UsagePublic
from app.core.errors import ValidationFailed
from app.core.models import utcnow
from app.settings import Settings

# Masks applied in `redacted` mode, in order: key-like strings first (they may contain
# digits), then e-mail addresses, then long digit runs (card, phone, account numbers).
#
# They run on the request thread, holding the GIL, over caller-chosen text, so each must
# cost linear time whatever the text (docs/ai.md, "Limits on a generation"). The
# rule: a start position that does not match gives up after a bounded number of steps.
# Every quantifier is bounded except possessive tails (`*+`, `++`) that end a pattern:
# they cannot fail and never give characters back, so their work is the length of the
# match, which is replaced and never scanned again. The e-mail pattern only starts a
# local part where a run of local-part characters starts (the lookbehind): without it,
# each position of `a.a.a...` scanned up to the run's end looking for `@`, which made
# the old `[\w.+\-]+@` quadratic (minutes for 200k characters). Limits from RFC 5321
# 4.5.3.1 (local part 64) and RFC 1035 2.3.4 (label 63).
_TOKEN: Final = r"[A-Za-z0-9_\-]"
_CREDENTIAL: Final = r"[A-Za-z0-9._~+/=\-]"  # RFC 6750 2.1 b64token
_REDACTIONS: Final = (
    (re.compile(rf"\b(?:sk|pk|rk|sapi|key|tok)[-_]{_TOKEN}{{8}}{_TOKEN}*+"), "[secret]"),
    (
        re.compile(rf"\b(?:Bearer|Basic)\s{{1,8}}{_CREDENTIAL}{{8}}{_CREDENTIAL}*+", re.I),
        "[secret]",
    ),
    (re.compile(rf"\b{_TOKEN}{{32}}{_TOKEN}*+"), "[secret]"),
    (
        re.compile(r"(?:(?<![\w.+\-])[\w.+\-]{1,64})?@[\w\-]{1,63}(?:\.[\w\-]{1,63})++"),
        "[email]",
    ),
    (re.compile(r"\+?\d[\d \-]{6,64}\d(?:[\d \-]{0,64}\d)*+"), "[number]"),
)
#: Characters past `AI_HISTORY_MAX_CHARS` that are redacted with the kept part, so a
#: secret cut by the limit is still recognised: more than any pattern above needs to
#: decide on a match (the longest, an e-mail: 64 + 1 + 63 + 1 + 1 characters).
REDACT_MARGIN: Final = 256


# A Core INSERT of the table: SQLAlchemy compiles it once per process. Not the ORM entity
# (a list of rows then takes the session's bulk path, more CPU per row) and not
# `postgresql.insert(...).on_conflict_do_nothing()`, which SQLAlchemy 2.0.44 cannot cache
# ("no key"): it was compiled again on every call. A row written twice (a journaled
# record whose drainer died after its COMMIT) is a primary-key violation the writers
# treat as done (`already_written`).
_INSERT: Final = insert(AIGeneration.__table__)  # type: ignore[attr-defined]
#: Columns of a row, in `row()`'s order: what a journaled record carries.
COLUMNS: Final = (
    "id", "created_at", "updated_at", "owner", "user_id", "api_key_id", "job_id",
    "provider", "model", "upstream_model", "surface", "stream", "outcome", "error_code",
    "input_tokens", "output_tokens", "tokens_estimated", "cost_usd", "latency_ms", "ttft_ms",
    "attempts",
    "prompt", "response", "prompt_chars", "response_chars", "prompt_sha256",
    "request_id", "trace_id",
)  # fmt: skip
_LISTED: Final = ", ".join(COLUMNS)
# Named columns (not SELECT *): a column added later keeps its default. Only constants
# are formatted into the SQL; the records are one bound parameter.
# A record journaled by a process older than migration 0007 has no `surface`: it came
# from generate.
_SELECTED: Final = _LISTED.replace("surface", "COALESCE(surface, 'generate')")
_INSERT_JSON: Final = text(
    f"INSERT INTO ai_generation ({_LISTED}) SELECT {_SELECTED} "
    "FROM jsonb_populate_recordset(NULL::ai_generation, CAST(:rows AS jsonb)) "
    "ON CONFLICT (id) DO NOTHING"
)


def redact(text: str) -> str:
    """`text` with secrets, e-mail addresses and long numbers masked."""
    for pattern, mask in _REDACTIONS:
        text = pattern.sub(mask, text)
    return text


def kept_text(text: str | None, settings: Settings) -> str | None:
    """What `AI_HISTORY_CONTENT` keeps of `text` (None in `none` mode)."""
    if text is None or settings.ai_history_content == "none":
        return None
    limit = settings.ai_history_max_chars
    if settings.ai_history_content == "redacted":
        # Only what is kept (and a margin) is scanned, never the whole prompt.
        text = redact(text[: limit + REDACT_MARGIN])
    return text[:limit]


@dataclass(frozen=True, slots=True)
class Owner:
    """Whose record: the user, and the API key used if any."""

    owner: str
    user_id: str | None
    api_key_id: str | None


def row(
    *,
    settings: Settings,
    owner: Owner,
    model: str,
    provider: str | None,
    outcome: str,
    prompt: str,
    response: str | None,
    input_tokens: int = 0,
    output_tokens: int = 0,
    estimated: bool = False,
    cost: Decimal = Decimal(0),
    latency_ms: int = 0,
    ttft_ms: int | None = None,
    stream: bool = False,
    error_code: str | None = None,
    attempts: list[dict[str, Any]] | None = None,
    job_id: uuid.UUID | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
    row_id: uuid.UUID | None = None,
    upstream_model: str | None = None,
    surface: str = "generate",
) -> dict[str, Any]:
    """The column values of one history row (stamped now; prompt/response as kept)."""
    now = utcnow()
    return {
        "id": row_id or uuid.uuid4(),
        "created_at": now,
        "updated_at": now,
        "owner": owner.owner,
        "user_id": owner.user_id,
        "api_key_id": owner.api_key_id,
        "job_id": job_id,
        "provider": provider,
        "model": model,
        "upstream_model": upstream_model,
        "surface": surface,
        "stream": stream,
        "outcome": outcome,
        "error_code": error_code,
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "tokens_estimated": estimated,
        "cost_usd": cost,
        "latency_ms": latency_ms,
        "ttft_ms": ttft_ms,
        "attempts": attempts or [],
        "prompt": kept_text(prompt, settings),
        "response": kept_text(response, settings),
        "prompt_chars": len(prompt),
        "response_chars": len(response or ""),
        "prompt_sha256": hashlib.sha256(prompt.encode("utf-8")).hexdigest(),
        "request_id": request_id,
        "trace_id": trace_id,
    }


def insert_rows(session: Session | Connection, rows: list[dict[str, Any]]) -> None:
    """INSERT `rows` in `session`'s transaction (the caller commits).

    One statement with bound parameters, compiled once per process (a `.values(...)`
    statement with the row inlined cost ~1 ms of CPU per call to build its cache key,
    bench/ai_gateway.py); several rows go in one multi-row INSERT.
    """
    session.execute(_INSERT, rows)


def insert_json(session: Session | Connection, rows_json: str) -> None:
    """INSERT the rows of a JSON array of journaled records (`history_queue.encode`);
    ids already present are skipped.

    PostgreSQL parses the JSON (`jsonb_populate_recordset`), so a batch costs the
    drainer one string parameter instead of ~27 bound values a row, converted in Python
    while it holds the GIL the request threads of its process need.
    """
    session.execute(_INSERT_JSON, {"rows": rows_json})


def already_written(error: IntegrityError) -> bool:
    """True when `error` is the primary key refusing a row that is already there."""
    return getattr(error.orig, "pgcode", None) == errorcodes.UNIQUE_VIOLATION


def record(*, session: Session, **fields: Any) -> uuid.UUID:
    """Insert one history row (the arguments of `row`) in `session`'s transaction; its id."""
    values = row(**fields)
    insert_rows(session, [values])
    row_id: uuid.UUID = values["id"]
    return row_id


def _cursor(row: AIGeneration) -> str:
    raw = f"{row.created_at.isoformat()}|{row.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, _, ident = raw.partition("|")
        return datetime.fromisoformat(at), uuid.UUID(ident)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            errors=[{"field": "cursor", "message": "not a cursor from this API", "type": "value"}]
        ) from None


def item(row: AIGeneration) -> HistoryItem:
    """The public shape of a row."""
    return HistoryItem(
        id=row.id,
        created_at=row.created_at,
        provider=row.provider,
        model=row.model,
        stream=row.stream,
        job_id=row.job_id,
        outcome=row.outcome,
        error_code=row.error_code,
        usage=UsagePublic(
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            total_tokens=row.input_tokens + row.output_tokens,
            estimated=row.tokens_estimated,
        ),
        cost_usd=format_cost(row.cost_usd),
        latency_ms=row.latency_ms,
        ttft_ms=row.ttft_ms,
        prompt=row.prompt,
        response=row.response,
        prompt_chars=row.prompt_chars,
        response_chars=row.response_chars,
    )


def format_cost(value: Decimal) -> str:
    """A cost as a plain decimal string without exponent (`0.000123`)."""
    return format(value.normalize(), "f") if value else "0"


def list_history(
    *, session: Session, owner: str, query: HistoryQuery
) -> tuple[list[AIGeneration], str | None]:
    """A page of `owner`'s records, newest first, and the cursor of the next page."""
    statement = select(AIGeneration).where(AIGeneration.owner == owner)
    if query.model is not None:
        statement = statement.where(AIGeneration.model == query.model)
    if query.provider is not None:
        statement = statement.where(AIGeneration.provider == query.provider)
    if query.outcome is not None:
        statement = statement.where(AIGeneration.outcome == query.outcome)
    if query.stream is not None:
        statement = statement.where(AIGeneration.stream == query.stream)
    if query.job_id is not None:
        statement = statement.where(AIGeneration.job_id == query.job_id)
    if query.since is not None:
        statement = statement.where(col(AIGeneration.created_at) >= query.since)
    if query.until is not None:
        statement = statement.where(col(AIGeneration.created_at) < query.until)
    if query.cursor is not None:
        at, ident = _parse_cursor(query.cursor)
        statement = statement.where(
            tuple_(col(AIGeneration.created_at), col(AIGeneration.id))
            < tuple_(literal(at, DateTime(timezone=True)), literal(ident))
        )
    statement = statement.order_by(
        col(AIGeneration.created_at).desc(), col(AIGeneration.id).desc()
    ).limit(query.limit + 1)
    rows = list(session.exec(statement).all())
    more = len(rows) > query.limit
    rows = rows[: query.limit]
    return rows, (_cursor(rows[-1]) if more and rows else None)


def purge(*, session: Session, older_than_days: int) -> int:
    """Delete records older than the retention; returns how many."""
    cutoff = utcnow() - timedelta(days=older_than_days)
    result = session.exec(delete(AIGeneration).where(col(AIGeneration.created_at) < cutoff))
    return int(result.rowcount or 0)
