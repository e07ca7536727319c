"""Reading the control tables into a snapshot (SQLAlchemy Core, any connection)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection

from app.config_store.models import GENERATION_ROW_ID, ConfigGeneration, ConfigObject
from app.config_store.snapshot import Snapshot, build_snapshot

_GEN = ConfigGeneration.__table__  # type: ignore[attr-defined]
_OBJ = ConfigObject.__table__  # type: ignore[attr-defined]
_COLUMNS = (
    "kind",
    "name",
    "spec",
    "status",
    "source",
    "source_namespace",
    "source_uid",
    "generation",
    "credential_ciphertext",
    "credential_version",
)

# One statement, hence one MVCC snapshot even under READ COMMITTED: the generation and
# the rows always agree (writers bump the counter in the same transaction as the rows).
_LOAD = (
    sa.select(_GEN.c.generation.label("store_generation"), *(_OBJ.c[c] for c in _COLUMNS))
    .select_from(_GEN.outerjoin(_OBJ, sa.true()))
    .where(_GEN.c.id == GENERATION_ROW_ID)
)
_GENERATION = sa.select(_GEN.c.generation).where(_GEN.c.id == GENERATION_ROW_ID)


def read_generation(conn: Connection) -> int:
    """The committed store generation (the cheap poll)."""
    return int(conn.execute(_GENERATION).scalar_one())


def load_snapshot(conn: Connection) -> Snapshot:
    """Every config object and the generation they belong to."""
    result = conn.execute(_LOAD).mappings().all()
    if not result:
        raise LookupError("config_generation row missing: run the migrations")
    generation = int(result[0]["store_generation"])
    rows = [dict(r) for r in result if r["kind"] is not None]
    return build_snapshot(generation, rows)
