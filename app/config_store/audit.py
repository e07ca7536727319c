"""Reading the config audit trail (written by `app.config_store.service`), newest first."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, col, select

from app.config_store.models import ConfigAudit


def list_audit(
    *,
    session: Session,
    limit: int,
    before: int | None = None,
    kind: str | None = None,
    name: str | None = None,
    source: str | None = None,
    actor: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[list[ConfigAudit], int | None]:
    """A page of audit rows matching every given filter, and the cursor of the next page.

    Keyset pagination on the bigint id (`before` = the last id seen): the trail only
    grows, so pages never shift under a reader the way offsets would.
    """
    statement = select(ConfigAudit)
    filters = {
        "kind": kind,
        "name": name,
        "source": source,
        "actor": actor,
        "action": action,
    }
    for field, value in filters.items():
        if value is not None:
            statement = statement.where(getattr(ConfigAudit, field) == value)
    if before is not None:
        statement = statement.where(col(ConfigAudit.id) < before)
    if since is not None:
        statement = statement.where(col(ConfigAudit.at) >= since)
    if until is not None:
        statement = statement.where(col(ConfigAudit.at) < until)
    rows = list(session.exec(statement.order_by(col(ConfigAudit.id).desc()).limit(limit + 1)))
    if len(rows) > limit:
        return rows[:limit], rows[limit - 1].id
    return rows, None
