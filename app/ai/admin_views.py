"""`PUT /v1/admin/ai-providers/{name}/credentials` (a provider's key, write-only) and
`GET /v1/admin/ai-spend` (spend per user or API key).

For installs without Kubernetes (with the operator, the key comes from the Secret the
AIProvider names). The key is encrypted before it reaches the session and is never
returned: the answer carries only its version hash, as the admin config API does.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, current_app

from app.ai import credentials as ai_credentials
from app.ai import spend as ai_spend
from app.ai.models import AdminSpendQuery, CredentialBody, CredentialStored
from app.ai.views import spend_range
from app.auth.decorators import require_roles
from app.config_store.extension import warn_if_unannounced
from app.config_store.service import Source
from app.config_store.views import actor
from app.core import redis
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import ok
from app.settings import Settings

bp = Blueprint("admin_ai", __name__, url_prefix="/admin")

TAGS: Final = ["admin: config"]
SCOPE: Final = "admin:config"


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


@bp.put("/ai-providers/<name>/credentials")
@require_roles("admin", scopes=[SCOPE])
@operation(
    "Store an AI provider's API key (encrypted; never returned)",
    tags=TAGS,
    body=CredentialBody,
    response=CredentialStored,
    auth=True,
    roles=["admin"],
    errors=[404, 409],
)
def put_credentials(name: str, body: CredentialBody) -> Response:
    """Encrypt and store the key; 409 when a custom resource owns the provider."""
    change = ai_credentials.store_credential(
        session=get_session(),
        name=name,
        api_key=body.apiKey,
        source=Source.admin(),
        actor=actor(),
        settings=_settings(),
        redis_client=redis.client(),
    )
    warn_if_unannounced(change)
    assert change.row is not None and change.row.credential_version is not None
    return ok(
        CredentialStored(
            name=name,
            credential_version=change.row.credential_version,
            generation=change.generation,
        )
    )


@bp.get("/ai-spend")
@require_roles("admin", scopes=[SCOPE])
@operation(
    "AI spend per user or per API key (biggest first), summed from history rows",
    tags=["admin: ai"],
    query=AdminSpendQuery,
    auth=True,
    roles=["admin"],
    errors=[422],
)
def admin_spend(query: AdminSpendQuery) -> Response:
    """Who spent what over whole UTC days."""
    first, last = spend_range(query.since, query.until)
    rows = ai_spend.spend_by(
        session=get_session(), group_by=query.group_by, since=first, until=last,
        limit=query.limit,
    )  # fmt: skip
    return ok({"since": first.isoformat(), "until": last.isoformat(),
               "group_by": query.group_by, "data": rows})  # fmt: skip
