"""Concurrent writers: every change gets its own generation, in commit order, none lost."""

from __future__ import annotations

import secrets
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import Engine, delete
from sqlmodel import Session, col, select

from app.config_store import service
from app.config_store.models import ConfigAudit, ConfigObject
from tests.config_store.conftest import SPECS

WRITERS = 12


def test_concurrent_writers_get_distinct_consecutive_generations(migrated_engine: Engine) -> None:
    names = [f"c-{secrets.token_hex(3)}-{i}" for i in range(WRITERS)]

    def write(name: str) -> int:
        with Session(migrated_engine) as session:
            return service.upsert_config(
                session=session,
                kind="RateLimitPolicy",
                name=name,
                spec=SPECS["RateLimitPolicy"],
                source=service.Source.admin(),
                actor="test",
            ).generation

    try:
        with ThreadPoolExecutor(max_workers=WRITERS) as pool:
            generations = sorted(pool.map(write, names))
        assert generations == list(range(generations[0], generations[0] + WRITERS))
        with Session(migrated_engine) as session:
            audited = session.exec(
                select(ConfigAudit.generation).where(col(ConfigAudit.name).in_(names))
            ).all()
            assert sorted(audited) == generations
            assert service.current_generation(session=session) >= generations[-1]
    finally:
        with Session(migrated_engine) as session:
            # Through the service, so watchers see a new generation without these rows.
            rows = session.exec(select(ConfigObject).where(col(ConfigObject.name).in_(names))).all()
            for row in rows:
                service.delete_config(
                    session=session,
                    kind=row.kind,
                    name=row.name,
                    source=service.Source.admin(),
                    actor="test",
                )
            session.exec(delete(ConfigAudit).where(col(ConfigAudit.name).in_(names)))  # type: ignore[call-overload]
            session.commit()
