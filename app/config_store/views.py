"""`/v1/admin/...` for runtime config: CRUD per kind, the live snapshot, the audit trail.

Bodies mirror the custom resources (`{"name", "spec"}`); the spec models are the same
ones that generate the CRD schemas, so this API refuses exactly what the apiserver
refuses. Rows a custom resource owns are read-only here (409 `RES_CONFLICT`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, Final, TypeVar

from flask import Blueprint, Response, current_app

from app.auth.decorators import require_roles
from app.auth.identify import current_caller
from app.config_store import service
from app.config_store.audit import list_audit
from app.config_store.extension import config_store, warn_if_unannounced
from app.config_store.models import (
    AuditPage,
    AuditPublic,
    AuditQuery,
    ConfigBody,
    ConfigDeleted,
    ConfigListQuery,
    ConfigObject,
    ConfigPublic,
    ConfigsPublic,
    SourcePublic,
)
from app.config_store.snapshot import ConfigEntry
from app.core import redis
from app.core.db import get_session
from app.core.errors import ValidationFailed
from app.core.openapi import operation
from app.core.responses import created, ok
from app.core.specs import KINDS
from app.core.warnings import WarningLevel, warn
from app.settings import Settings

F = TypeVar("F", bound=Callable[..., Response])

bp = Blueprint("admin_config", __name__, url_prefix="/admin")

TAGS: Final = ["admin: config"]
SCOPE: Final = "admin:config"
#: URL collection -> config kind.
COLLECTIONS: Final = {
    "api-versions": "ApiVersion",
    "rate-limit-policies": "RateLimitPolicy",
    "ai-providers": "AIProvider",
    "ai-model-routes": "AIModelRoute",
}
_SECRET_KEYS: Final = frozenset(
    {"apikey", "api_key", "password", "secret", "token", "privatekey", "ciphertext"}
)


def actor() -> str:
    """The audit actor of the current request: `user:<id>` or `api_key:<id>`."""
    caller = current_caller()
    if caller.kind == "api_key":
        return f"api_key:{caller.key_id}"
    return f"{caller.kind}:{caller.subject}"


def redact(value: Any) -> Any:
    """Replace string values of secret-looking keys (defence in depth: specs hold none)."""
    if isinstance(value, dict):
        return {
            k: "***" if k.lower() in _SECRET_KEYS and isinstance(v, str) else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def _credential(version: str | None, ciphertext: str | None) -> dict[str, Any] | None:
    if version is None and ciphertext is None:
        return None
    return {"present": ciphertext is not None, "version": version}


def public(row: ConfigObject) -> dict[str, Any]:
    """The API form of a stored row (`spec` as stored: defaults filled, nulls left out)."""
    return {
        "name": row.name,
        "spec": redact(row.spec),
        "status": row.status,
        "source": {"type": row.source, "namespace": row.source_namespace, "uid": row.source_uid},
        "generation": row.generation,
        "credential": _credential(row.credential_version, row.credential_ciphertext),
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


def _guard(view: F) -> F:
    return require_roles("admin", scopes=[SCOPE])(view)


def _register(collection: str, kind: str) -> None:
    spec = KINDS[kind]
    body_model: Any = ConfigBody[spec]  # type: ignore[valid-type]
    public_model: Any = ConfigPublic[spec]  # type: ignore[valid-type]
    list_model: Any = ConfigsPublic[spec]  # type: ignore[valid-type]
    key = collection.replace("-", "_")
    path = f"/{collection}"
    common: dict[str, Any] = {"tags": TAGS, "auth": True, "roles": ["admin"]}

    @operation(f"List {kind} objects", query=ConfigListQuery, response=list_model, **common)
    def list_objects(query: ConfigListQuery) -> Response:
        rows = service.list_configs(session=get_session(), kind=kind, source=query.source)
        return ok({"data": [public(r) for r in rows], "count": len(rows)})

    @operation(f"Read one {kind}", response=public_model, errors=[404], **common)
    def get_object(name: str) -> Response:
        return ok(public(service.get_config(session=get_session(), kind=kind, name=name)))

    @operation(
        f"Create or replace a {kind} (409 if a custom resource owns it)",
        body=body_model,
        response=public_model,
        also=[201],  # 201 + Location when the PUT created it (RFC 9110 section 9.3.4)
        errors=[409],
        **common,
    )
    def put_object(name: str, body: Any) -> Response:
        if body.name is not None and body.name != name:
            raise ValidationFailed(
                errors=[
                    {
                        "field": "name",
                        "message": "must equal the name in the path",
                        "type": "value_error",
                    }
                ]
            )
        change = service.upsert_config(
            session=get_session(),
            kind=kind,
            name=name,
            spec=body.spec,
            source=service.Source.admin(),
            actor=actor(),
            allowed_http_hosts=_settings().ai_allowed_http_hosts,
            redis_client=redis.client(),
        )
        warn_if_unannounced(change)
        assert change.row is not None
        if change.credential_cleared:
            warn(
                "AI_CREDENTIAL_CLEARED",
                "baseURL now points at another scheme, host or port, so the stored API key "
                f"was removed; send it again: PUT /v1/admin{path}/{name}/credentials.",
                WarningLevel.WARN,
            )
        if change.action == "create":
            return created(public(change.row), location=f"/v1/admin{path}/{name}")
        return ok(public(change.row))

    @operation(
        f"Delete a {kind} (409 if a custom resource owns it)",
        response=ConfigDeleted,
        errors=[404, 409],
        **common,
    )
    def delete_object(name: str) -> Response:
        change = service.delete_config(
            session=get_session(),
            kind=kind,
            name=name,
            source=service.Source.admin(),
            actor=actor(),
            redis_client=redis.client(),
        )
        warn_if_unannounced(change)
        return ok(ConfigDeleted(name=name, deleted=True, generation=change.generation))

    views: dict[str, tuple[str, list[str], Callable[..., Response]]] = {
        f"list_{key}": (path, ["GET"], list_objects),
        f"get_{key}": (f"{path}/<name>", ["GET"], get_object),
        f"put_{key}": (f"{path}/<name>", ["PUT"], put_object),
        f"delete_{key}": (f"{path}/<name>", ["DELETE"], delete_object),
    }
    for endpoint, (rule, methods, view) in views.items():
        bp.add_url_rule(rule, endpoint=endpoint, view_func=_guard(view), methods=methods)


for _collection, _kind in COLLECTIONS.items():
    _register(_collection, _kind)


def snapshot_entry(entry: ConfigEntry) -> dict[str, Any]:
    """One snapshot entry as shown to admins: spec redacted, credential by version only."""
    return {
        "name": entry.name,
        "spec": redact(entry.spec.model_dump(mode="json", exclude_none=True)),
        "source": {
            "type": entry.source,
            "namespace": entry.source_namespace,
            "uid": entry.source_uid,
        },
        "generation": entry.generation,
        "credential": _credential(entry.credential_version, entry.credential_ciphertext),
    }


@bp.get("/config")
@_guard
@operation(
    "The config snapshot this process serves: generation and contents, secrets redacted",
    tags=TAGS,
    auth=True,
    roles=["admin"],
)
def get_snapshot() -> Response:
    """What this worker serves right now (not PostgreSQL): the snapshot, its pid and age."""
    store = config_store()
    snap = store.current()
    return ok(
        {
            "generation": snap.generation,
            "loaded": snap.loaded,
            "loaded_at": snap.loaded_at,
            "process": {
                "pid": os.getpid(),
                "subscribed": store.subscribed,
                "last_error": store.last_error,
                "last_error_at": store.last_error_at,
            },
            "objects": {
                kind: [snapshot_entry(e) for e in sorted(entries.values(), key=lambda e: e.name)]
                for kind, entries in snap.entries.items()
            },
            "invalid": [
                {"kind": i.kind, "name": i.name, "errors": list(i.errors)} for i in snap.invalid
            ],
        }
    )


@bp.get("/audit")
@_guard
@operation(
    "Every config change, newest first: actor, source, before/after, generation",
    tags=TAGS,
    query=AuditQuery,
    response=AuditPage,
    auth=True,
    roles=["admin"],
)
def get_audit(query: AuditQuery) -> Response:
    """A page of the audit trail; `next_cursor` fetches the next (older) page."""
    filters = query.model_dump(exclude={"limit", "cursor"})
    rows, next_id = list_audit(
        session=get_session(),
        limit=query.limit,
        before=int(query.cursor) if query.cursor else None,
        **filters,
    )
    data = [
        AuditPublic(
            id=r.id or 0,
            at=r.at,
            actor=r.actor,
            source=SourcePublic(type=r.source, namespace=r.source_namespace, uid=r.source_uid),
            kind=r.kind,
            name=r.name,
            action=r.action,
            before=redact(r.before),
            after=redact(r.after),
            generation=r.generation,
        )
        for r in rows
    ]
    return ok(AuditPage(data=data, next_cursor=str(next_id) if next_id else None))
