"""Runtime-config writes: validate, check the owner, bump the generation, audit, announce.

Used by the admin API (`source=Source.admin()`) and by the operator
(`Source.operator(namespace=..., uid=...)`), so both front doors obey the same rules:

* the spec is validated by its model in `app.core.specs.KINDS` (the CRD's source);
* a row belongs to the front door that created it; the other one gets `Conflict`
  (409 `RES_CONFLICT`), e.g. the admin API never edits what a custom resource declares;
* every change bumps the store generation and writes one `config_audit` row in the
  same transaction; after the commit the new generation is published on the Redis
  client the caller passes (`ConfigChange.announced`; a view warns when it was not).

Flask-free: the operator writes through these functions too.

Writers serialise on the single `config_generation` row (`SELECT ... FOR UPDATE`), so
generations are handed out in commit order and cross-object checks cannot race.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import redis
from pydantic import BaseModel
from sqlmodel import Session, col, select

from app.config_store.channel import announce
from app.config_store.models import (
    ACTION_CREATE,
    ACTION_DELETE,
    ACTION_UPDATE,
    GENERATION_ROW_ID,
    SOURCE_ADMIN,
    SOURCE_OPERATOR,
    ConfigAudit,
    ConfigGeneration,
    ConfigObject,
)
from app.config_store.validation import (
    check_base_url,
    check_name,
    normalised,
    origin_changed,
    spec_model,
    validate_spec,
)
from app.core.errors import Conflict, NotFound
from app.core.models import utcnow
from app.core.specs import AIProviderSpec, ApiVersionSpec

ACTION_UNCHANGED: Final = "unchanged"


@dataclass(frozen=True, slots=True)
class Source:
    """The front door writing a row: the admin API, or the operator for one custom resource."""

    type: str
    namespace: str | None = None
    uid: str | None = None

    @classmethod
    def admin(cls) -> Source:
        """The admin HTTP API."""
        return cls(SOURCE_ADMIN)

    @classmethod
    def operator(cls, *, namespace: str, uid: str) -> Source:
        """The operator, on behalf of the custom resource `namespace`/uid `uid`."""
        return cls(SOURCE_OPERATOR, namespace, uid)

    @classmethod
    def of(cls, row: ConfigObject) -> Source:
        """The owner of a stored row."""
        return cls(row.source, row.source_namespace, row.source_uid)

    def owns(self, row: ConfigObject) -> bool:
        """May this source change `row`? A CR recreated in the same namespace keeps it."""
        if row.source != self.type:
            return False
        return self.type == SOURCE_ADMIN or row.source_namespace == self.namespace

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in responses and audit rows."""
        return {"type": self.type, "namespace": self.namespace, "uid": self.uid}


@dataclass(frozen=True, slots=True)
class Credential:
    """An encrypted provider key (never clear text) and a version hash safe to show."""

    ciphertext: str
    version: str


#: Pass as `credential=` to remove a stored key (the operator, when a provider's Secret or
#: key disappears): the row stays, the gateway reports the provider unavailable.
NO_CREDENTIAL: Final = Credential(ciphertext="", version="")


@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What a write did: the row (None after a delete), the action and the generation."""

    row: ConfigObject | None
    action: str
    generation: int
    #: Published on Redis; False when no client was given or Redis did not answer (the
    #: processes then see the change at their next poll).
    announced: bool = False
    #: An AIProvider's stored key was dropped because its baseURL origin changed.
    credential_cleared: bool = False


def _lock_generation(session: Session) -> ConfigGeneration:
    statement = select(ConfigGeneration).where(ConfigGeneration.id == GENERATION_ROW_ID)
    return session.exec(statement.with_for_update()).one()


def _find(session: Session, kind: str, name: str) -> ConfigObject | None:
    statement = select(ConfigObject).where(ConfigObject.kind == kind, ConfigObject.name == name)
    return session.exec(statement).first()


def _state(row: ConfigObject | None) -> dict[str, Any] | None:
    """What the audit trail records of a row: spec, owner and credential version only."""
    if row is None:
        return None
    state: dict[str, Any] = {"spec": row.spec, "source": Source.of(row).to_dict()}
    if row.credential_version:
        state["credentialVersion"] = row.credential_version
    return state


def _refuse_foreign(row: ConfigObject) -> None:
    owner = Source.of(row)
    if owner.type == SOURCE_OPERATOR:
        message = (
            f"{row.kind} {row.name!r} is owned by the custom resource in namespace "
            f"{owner.namespace!r}; change it with kubectl."
        )
    else:
        message = f"{row.kind} {row.name!r} is owned by the admin API; delete it there first."
    raise Conflict(message, details={"kind": row.kind, "name": row.name, "owner": owner.to_dict()})


def _check_unique_version(session: Session, name: str, spec: BaseModel) -> None:
    # Requests are routed by URL prefix /v{major}: two objects for one major would be
    # ambiguous, so the second is refused (the CRD cannot express this, the store can).
    assert isinstance(spec, ApiVersionSpec)
    rows = session.exec(
        select(ConfigObject).where(ConfigObject.kind == "ApiVersion", ConfigObject.name != name)
    ).all()
    for other in rows:
        if str(other.spec.get("version", "")).split(".")[0] == str(spec.major):
            raise Conflict(
                f"ApiVersion {other.name!r} already describes /v{spec.major}.",
                details={"kind": "ApiVersion", "name": other.name, "version": spec.version},
            )


def _ready_status(previous: Mapping[str, Any], generation: int, now: datetime) -> dict[str, Any]:
    """Keep what the owner recorded; set observedGeneration and the Ready condition."""
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "Accepted",
        "message": f"Validated and stored at generation {generation}.",
        "lastTransitionTime": now.isoformat(),
    }
    conditions = [c for c in previous.get("conditions", []) if c.get("type") != "Ready"]
    return {**previous, "observedGeneration": generation, "conditions": [ready, *conditions]}


def _announce(redis_client: redis.Redis | None, generation: int) -> bool:
    # No client (a script, a test): processes pick the change up by polling.
    return redis_client is not None and announce(redis_client, generation)


def _audit(
    session: Session,
    *,
    row: ConfigObject,
    source: Source,
    actor: str,
    action: str,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
    generation: int,
) -> None:
    session.add(
        ConfigAudit(
            actor=actor[:200],
            source=source.type,
            source_namespace=source.namespace,
            source_uid=source.uid,
            kind=row.kind,
            name=row.name,
            action=action,
            before=before,
            after=after,
            generation=generation,
        )
    )


def upsert_config(
    *,
    session: Session,
    kind: str,
    name: str,
    spec: Mapping[str, Any] | BaseModel,
    source: Source,
    actor: str,
    credential: Credential | None = None,
    redis_client: redis.Redis | None = None,
    allowed_http_hosts: Collection[str] | None = None,
) -> ConfigChange:
    """Create or replace `kind`/`name`; a no-op write changes nothing and audits nothing.

    `allowed_http_hosts` (the writer's `AI_ALLOWED_HTTP_HOSTS`) refuses an AIProvider whose
    plain-http baseURL names another host; None leaves that to the provider client, which
    checks every call anyway. An AIProvider whose origin changes loses its stored key
    unless `credential` brings one for the new spec: a key never follows a changed URL.
    """
    check_name(name)
    model = validate_spec(kind, spec)
    if allowed_http_hosts is not None and isinstance(model, AIProviderSpec):
        check_base_url(model, allowed_http_hosts)
    stored_spec = normalised(model)
    counter = _lock_generation(session)
    row = _find(session, kind, name)
    if row is not None and not source.owns(row):
        session.rollback()
        _refuse_foreign(row)
    if kind == "ApiVersion":
        try:
            _check_unique_version(session, name, spec_model(kind).model_validate(stored_spec))
        except Conflict:
            session.rollback()
            raise
    cleared = credential is None and origin_changed(row, model)
    if cleared and row is not None and row.credential_ciphertext is not None:
        credential = NO_CREDENTIAL
    else:
        cleared = False
    if (
        row is not None
        and row.spec == stored_spec
        and Source.of(row) == source
        and (credential is None or (credential.version or None) == row.credential_version)
    ):
        session.commit()  # releases the lock; the operator re-applies unchanged CRs often
        return ConfigChange(row, ACTION_UNCHANGED, row.generation)

    generation = counter.generation + 1
    now = utcnow()
    counter.generation, counter.updated_at = generation, now
    before = _state(row)
    action = ACTION_UPDATE if row is not None else ACTION_CREATE
    if row is None:
        row = ConfigObject(kind=kind, name=name, source=source.type, generation=generation)
    row.spec, row.generation = stored_spec, generation
    row.source, row.source_namespace, row.source_uid = source.type, source.namespace, source.uid
    if credential is not None:
        row.credential_ciphertext, row.credential_version = (
            credential.ciphertext or None,
            credential.version or None,
        )
    row.status = _ready_status(row.status or {}, generation, now)
    session.add_all([counter, row])
    _audit(
        session,
        row=row,
        source=source,
        actor=actor,
        action=action,
        before=before,
        after=_state(row),
        generation=generation,
    )
    session.commit()
    return ConfigChange(
        row, action, generation, _announce(redis_client, generation), credential_cleared=cleared
    )


def delete_config(
    *,
    session: Session,
    kind: str,
    name: str,
    source: Source,
    actor: str,
    redis_client: redis.Redis | None = None,
) -> ConfigChange:
    """Delete `kind`/`name`; `NotFound` if absent, `Conflict` if another source owns it."""
    spec_model(kind)
    counter = _lock_generation(session)
    row = _find(session, kind, name)
    if row is None:
        session.rollback()
        raise NotFound(f"{kind} {name!r} does not exist.")
    if not source.owns(row):
        session.rollback()
        _refuse_foreign(row)
    generation = counter.generation + 1
    counter.generation, counter.updated_at = generation, utcnow()
    session.add(counter)
    _audit(
        session,
        row=row,
        source=source,
        actor=actor,
        action=ACTION_DELETE,
        before=_state(row),
        after=None,
        generation=generation,
    )
    session.delete(row)
    session.commit()
    return ConfigChange(None, ACTION_DELETE, generation, _announce(redis_client, generation))


def get_config(*, session: Session, kind: str, name: str) -> ConfigObject:
    """One object, or `NotFound`."""
    spec_model(kind)
    row = _find(session, kind, name)
    if row is None:
        raise NotFound(f"{kind} {name!r} does not exist.")
    return row


def list_configs(*, session: Session, kind: str, source: str | None = None) -> list[ConfigObject]:
    """Every object of `kind` (optionally of one source), by name."""
    spec_model(kind)
    statement = select(ConfigObject).where(ConfigObject.kind == kind)
    if source is not None:
        statement = statement.where(ConfigObject.source == source)
    return list(session.exec(statement.order_by(col(ConfigObject.name))).all())


def update_status(
    *, session: Session, kind: str, name: str, status: Mapping[str, Any]
) -> ConfigObject:
    """Merge observed state into `status`; not a config change (no generation, no audit)."""
    row = get_config(session=session, kind=kind, name=name)
    row.status = {**(row.status or {}), **status}
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def current_generation(*, session: Session) -> int:
    """The store generation as committed (what the next snapshot will carry)."""
    statement = select(ConfigGeneration.generation).where(ConfigGeneration.id == GENERATION_ROW_ID)
    return int(session.exec(statement).one())
