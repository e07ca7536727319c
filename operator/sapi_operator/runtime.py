"""Per-process state of a running operator: settings, store, API client, locks."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Final

import redis

from app.core.crypto import Keyring, keyring
from app.core.redis_client import build_client
from app.settings import Settings
from sapi_operator.kube import Kube
from sapi_operator.reconcile import ObjectRef
from sapi_operator.store import ConfigWriter

#: Annotation the Secret watcher bumps on an AIProvider so Kopf re-runs its handler.
CREDENTIALS_REVISION: Final = "structured-api.io/credentials-revision"
#: Prefix of Kopf's own bookkeeping annotations (progress and last-handled spec).
KOPF_PREFIX: Final = "operator.structured-api.io"


@dataclass
class Runtime:
    """What every handler and the drift loop share inside one operator process."""

    settings: Settings
    keyring: Keyring
    store: ConfigWriter
    kube: Kube
    usage_redis: redis.Redis
    locks: dict[tuple[str, str, str], asyncio.Lock] = field(default_factory=dict)
    last_drift_check: float = field(default_factory=time.monotonic)
    drift_task: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
        """Open the store and the API client; fails fast on a malformed encryption key."""
        ring = keyring(settings)
        store = ConfigWriter(settings)
        usage = (
            build_client(settings.model_copy(update={"redis_url": settings.rate_limit_redis_url}))
            if settings.rate_limit_redis_url
            else store.redis
        )
        return cls(settings, ring, store, await Kube.connect(settings), usage)

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Watched namespaces; empty means cluster-wide."""
        return tuple(self.settings.operator_namespaces)

    def in_scope(self, namespace: str | None) -> bool:
        """Does this operator own rows written for resources in `namespace`?"""
        return not self.namespaces or namespace in self.namespaces

    def lock(self, ref: ObjectRef) -> asyncio.Lock:
        """One lock per resource: a handler and the drift check never write it at once."""
        key = (ref.kind, ref.namespace, ref.name)
        found = self.locks.get(key)
        if found is None:
            found = self.locks[key] = asyncio.Lock()
        return found

    def forget(self, ref: ObjectRef) -> None:
        """Drop the lock of a deleted resource."""
        self.locks.pop((ref.kind, ref.namespace, ref.name), None)

    async def close(self) -> None:
        """Stop the drift loop, close the API client and the store."""
        if self.drift_task is not None:
            self.drift_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.drift_task
        await self.kube.close()
        if self.usage_redis is not self.store.redis:
            self.usage_redis.close()
        self.store.close()
