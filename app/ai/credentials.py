"""AI provider keys at rest: encrypt, store next to the provider row, re-encrypt on rotation.

The one place a clear-text key becomes ciphertext (app/core/crypto.py keyring; the key
from `CREDENTIAL_ENCRYPTION_KEYS`, else derived from SECRET_KEY). Callers:

* the admin API, `PUT /v1/admin/ai-providers/{name}/credentials` (no Kubernetes);
* the operator, with the key read from the Secret the AIProvider names: either
  `store_credential(..., source=Source.operator(namespace=..., uid=...))`, or
  `make_credential(key, settings=...)` passed to `upsert_config(credential=...)` to
  write spec and key in one change;
* `flask ai rotate-credentials` after a new encryption key was put first.

Writes go through `app.config_store.service.upsert_config`, so they bump the config
generation (every process picks the new key up without a restart), are audited with
the key's version hash only, and respect ownership (409 for a CR-owned provider).
"""

from __future__ import annotations

import redis
from sqlmodel import Session

from app.config_store.service import (
    ConfigChange,
    Credential,
    Source,
    get_config,
    list_configs,
    upsert_config,
)
from app.config_store.snapshot import AI_PROVIDER
from app.core.crypto import keyring
from app.settings import Settings


def make_credential(api_key: str, *, settings: Settings) -> Credential:
    """Ciphertext and version hash of `api_key` under the current primary key."""
    ring = keyring(settings)
    return Credential(ciphertext=ring.encrypt(api_key), version=ring.version(api_key))


def store_credential(
    *,
    session: Session,
    name: str,
    api_key: str,
    source: Source,
    actor: str,
    settings: Settings,
    redis_client: redis.Redis | None = None,
) -> ConfigChange:
    """Encrypt `api_key` and store it on provider `name` (unchanged key: no new generation)."""
    row = get_config(session=session, kind=AI_PROVIDER, name=name)
    return upsert_config(
        session=session,
        kind=AI_PROVIDER,
        name=name,
        spec=row.spec,
        source=source,
        actor=actor,
        credential=make_credential(api_key, settings=settings),
        redis_client=redis_client,
    )


def reencrypt_all(
    *, session: Session, settings: Settings, actor: str, redis_client: redis.Redis | None = None
) -> list[str]:
    """Re-encrypt every provider key not yet under the primary key; names changed."""
    ring = keyring(settings)
    changed: list[str] = []
    for row in list_configs(session=session, kind=AI_PROVIDER):
        token = row.credential_ciphertext
        if token is None or ring.is_current(token):
            continue
        plaintext = ring.decrypt(token)
        upsert_config(
            session=session,
            kind=AI_PROVIDER,
            name=row.name,
            spec=row.spec,
            # Acting for the row's owner: rotation changes no ownership (an operator row
            # stays the operator's, and its next sync computes the same version).
            source=Source.of(row),
            actor=actor,
            credential=make_credential(plaintext, settings=settings),
            redis_client=redis_client,
        )
        changed.append(row.name)
    return changed
