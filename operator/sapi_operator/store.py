"""The operator's thin I/O layer to the config store: the same service functions the admin
API uses (`app.config_store.service`), so ownership, audit, generation and the Redis
announcement follow one set of rules. Blocking calls: the handlers run them in a thread.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Final

import redis
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from app.config_store.models import SOURCE_OPERATOR, ConfigObject
from app.config_store.service import (
    ACTION_UNCHANGED,
    Credential,
    Source,
    delete_config,
    upsert_config,
)
from app.core.errors import Conflict, NotFound, ValidationFailed
from app.core.redis_client import build_client
from app.database.engine import build_engine
from app.settings import Settings
from sapi_operator.reconcile import Desired, ObjectRef, Outcome, applied, conflict
from sapi_operator.reconcile import store_unavailable as unavailable

log = logging.getLogger("sapi_operator.store")
ACTOR_PREFIX: Final = "operator:"


class StoreUnavailable(Exception):
    """PostgreSQL could not be reached or failed; the caller retries."""


@dataclass(frozen=True)
class StoredRow:
    """An operator-owned row as the drift check compares it."""

    kind: str
    name: str
    spec: dict[str, Any]
    namespace: str | None
    uid: str | None
    credential_version: str | None = field(default=None, repr=False)


def actor(ref: ObjectRef) -> str:
    """Who the audit trail says made a change: the operator, on behalf of one resource."""
    return f"{ACTOR_PREFIX}{ref.namespace}/{ref.name}"


class ConfigWriter:
    """Writes and reads operator rows; one engine and one Redis client per process."""

    def __init__(self, settings: Settings) -> None:
        self.engine = build_engine(settings)
        self.redis: redis.Redis = build_client(settings)
        self.allowed_http_hosts = tuple(settings.ai_allowed_http_hosts)

    def apply(self, desired: Desired, credential: Credential | None = None) -> Outcome:
        """Upsert the row `desired` describes (no-op when it already matches)."""
        ref = desired.ref
        try:
            with Session(self.engine) as session:
                change = upsert_config(
                    session=session,
                    kind=ref.kind,
                    name=ref.name,
                    spec=desired.spec,
                    source=Source.operator(namespace=ref.namespace, uid=ref.uid),
                    actor=actor(ref),
                    credential=credential,
                    redis_client=self.redis,
                    allowed_http_hosts=self.allowed_http_hosts,
                )
        except Conflict as exc:
            return conflict(ref, exc.details.get("owner") or {}, exc.details)
        except ValidationFailed as exc:
            # The CRD schema and the models are generated from one source; reaching this
            # means a rule only PostgreSQL-side checks know (e.g. the name).
            fields = "; ".join(f"{e['field']}: {e['message']}" for e in exc.errors)
            return Outcome(False, "InvalidSpec", f"Fix the resource: {fields}.")
        except SQLAlchemyError as exc:
            log.warning("config store write failed for %s: %s", ref.label, type(exc).__name__)
            return unavailable(type(exc).__name__)
        return applied(change.generation, changed=change.action != ACTION_UNCHANGED)

    def remove(self, ref: ObjectRef) -> bool:
        """Delete the row `ref` owns; False if there was none (or it is not ours)."""
        try:
            with Session(self.engine) as session:
                delete_config(
                    session=session,
                    kind=ref.kind,
                    name=ref.name,
                    source=Source.operator(namespace=ref.namespace, uid=ref.uid),
                    actor=actor(ref),
                    redis_client=self.redis,
                )
        except (NotFound, Conflict):
            return False
        except SQLAlchemyError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc
        return True

    def rows(self, kind: str) -> list[StoredRow]:
        """Every operator-owned row of `kind`."""
        try:
            with Session(self.engine) as session:
                statement = (
                    select(ConfigObject)
                    .where(ConfigObject.kind == kind, ConfigObject.source == SOURCE_OPERATOR)
                    .order_by(col(ConfigObject.name))
                )
                return [
                    StoredRow(
                        kind=r.kind,
                        name=r.name,
                        spec=dict(r.spec),
                        namespace=r.source_namespace,
                        uid=r.source_uid,
                        credential_version=r.credential_version,
                    )
                    for r in session.exec(statement).all()
                ]
        except SQLAlchemyError as exc:
            raise StoreUnavailable(type(exc).__name__) from exc

    def remove_row(self, row: StoredRow) -> bool:
        """Delete an orphaned operator row (its resource is gone)."""
        ref = ObjectRef(row.kind, row.namespace or "", row.name, row.uid or "", 0)
        return self.remove(ref)

    def close(self) -> None:
        """Release connections."""
        self.engine.dispose()
        self.redis.close()
