"""History rows of request-path generations go through the journal, off the latency path.

    submit(values=ai_history.row(...), session=get_session)     # in the request
    journal(app).drain()                                         # beat, tests, shutdown

`submit` costs one Redis RPUSH; the drainer thread of the process writes the rows in
batches about `FLUSH_DELAY` later (app/ai/history/journal.py). When Redis does not take the record,
`submit` writes it inline, in the request's transaction, as before. A row PostgreSQL
refuses for its content (never expected: every field is validated or bounded first) is
not retried forever: it goes to the dead-letter store, whose replay writes it.
Jobs keep writing their row in the job's own transaction (app/ai/jobs/runs.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, Final

from flask import Flask, current_app
from sqlalchemy import Connection
from sqlalchemy.exc import DataError, IntegrityError
from sqlmodel import Session

from app.ai.concurrency import Slot
from app.ai.dead_letters import service as dead_letters
from app.ai.history import records as ai_history
from app.ai.history.journal import Journal
from app.core.db import EXTENSION as DB
from app.core.redis import EXTENSION as REDIS
from app.settings.redis_url import connect

EXTENSION: Final = "ai_history_journal"
JOURNAL_NAME: Final = "history"
#: Dead-letter task name of a history row PostgreSQL refused; replay runs it.
WRITE_TASK: Final = "sapi.ai.write_history"
#: How long the drainer lets records gather before writing them in one statement: a
#: batch's fixed cost (~2 ms of CPU: Redis, pool pre-ping, INSERT, COMMIT) is then
#: shared by many rows, and the drainer takes the GIL from requests less often.
FLUSH_DELAY: Final = 0.25
#: Records per INSERT (one JSON parameter: PostgreSQL does the per-row work).
BATCH: Final = 200
_UUIDS: Final = ("id", "job_id")
_TIMES: Final = ("created_at", "updated_at")


def encode(values: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON types (UUIDs and decimals as strings, times in ISO 8601)."""
    out = dict(values)
    for key in _UUIDS:
        if out[key] is not None:
            out[key] = str(out[key])
    for key in _TIMES:
        out[key] = out[key].isoformat()
    out["cost_usd"] = str(out["cost_usd"])
    return out


class Writer:
    """Writes a batch of journaled records in one statement (idempotent by row id).

    `begin()` gives a connection in a transaction committed when its block ends
    (`engine.begin`). The records go to PostgreSQL as they were pushed, one JSON array
    (`ai_history.insert_json`): no decoding or per-value binding in this process.
    """

    def __init__(self, begin: Callable[[], AbstractContextManager[Connection]]) -> None:
        self.begin = begin

    def __call__(self, raw: list[bytes]) -> None:
        try:
            with self.begin() as conn:
                ai_history.insert_json(conn, _array(raw))
            return
        except (DataError, IntegrityError):
            pass
        # Row by row: one refused for its content goes to the dead-letter store instead
        # of holding the others back (connection errors propagate: the batch is retried).
        for item in raw:
            try:
                with self.begin() as conn:
                    ai_history.insert_json(conn, _array([item]))
            except (DataError, IntegrityError) as exc:
                self._dead_letter(item, exc)

    def _dead_letter(self, item: bytes, exc: Exception) -> None:
        try:
            record: dict[str, Any] = json.loads(item)
        except ValueError:
            record = {"id": None, "raw": item.decode("utf-8", "replace")}
        with self.begin() as conn, Session(bind=conn) as session:
            _dead_letter(session, record, exc)
            session.commit()  # the outer `begin()` block commits the row


def _array(raw: list[bytes]) -> str:
    return (b"[" + b",".join(raw) + b"]").decode()


def _dead_letter(session: Session, record: dict[str, Any], exc: Exception) -> None:
    error_type, message = dead_letters.error_text(exc)
    dead_letters.record(
        session=session,
        task_name=WRITE_TASK,
        task_id=str(record["id"]),
        args=[record],
        kwargs={},
        error_type=error_type,
        error_message=message,
        attempts=1,
        subject=f"ai_generation:{record['id']}",
    )


def journal(app: Flask | None = None) -> Journal:
    """The history journal of `app` (default: the current app), created on first use."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    held: Journal | None = app.extensions.get(EXTENSION)
    if held is None:
        engine = app.extensions[DB]
        held = Journal(
            app.extensions[REDIS],
            name=JOURNAL_NAME,
            write=Writer(engine.begin),
            batch=BATCH,
            delay=FLUSH_DELAY,
            lease=app.extensions["settings"].ai_history_lease_seconds,
        )
        held = app.extensions.setdefault(EXTENSION, held)
    return held


def backlog_reader(redis_url: str, *, sentinel_password: str | None = None) -> Callable[[], int]:
    """Counts the records not yet in PostgreSQL, on a connection of its own (for scrapes)."""
    client = connect(
        redis_url,
        sentinel_password=sentinel_password,
        socket_timeout=1.0,
        socket_connect_timeout=1.0,
    )
    return Journal(client, name=JOURNAL_NAME, write=None).backlog


def submit(
    *,
    values: dict[str, Any],
    session: Session | Callable[[], Session],
    slot: Slot | None = None,
) -> None:
    """Queue one history row; written inline (and committed) if Redis refuses.

    `session` may be a factory (`get_session`): the request then opens none at all.
    `slot`: the call's concurrency slot, given back in the push's round trip when it lives
    on the journal's Redis (`Slot.release_command`); otherwise its `release()` does it.
    """
    if push(values, slot=slot):
        return
    write_inline(session if isinstance(session, Session) else session(), values)


def push(values: dict[str, Any], *, slot: Slot | None = None, into: Journal | None = None) -> bool:
    """Journal one row (and release `slot` with it, see `submit`); False if Redis refused."""
    release = slot.release_command() if slot is not None else None
    pushed = (into or journal()).push(encode(values), also=(release,) if release else ())
    if pushed and slot is not None and release is not None:
        slot.released()
    return pushed


def write_inline(session: Session, values: dict[str, Any]) -> None:
    """INSERT + COMMIT one row in `session` (Redis did not take it); already there is fine.

    A push can fail after Redis stored the record (a lost reply): the drainer's copy and
    this one then share the id, and whichever comes second is a no-op.
    """
    try:
        ai_history.insert_rows(session, [values])
        session.commit()
    except IntegrityError as exc:
        session.rollback()
        if not ai_history.already_written(exc):
            raise
