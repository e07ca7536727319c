"""What each handler does: pure reconcile logic wrapped around the I/O layer.

The handlers module only adapts Kopf's arguments and raises Kopf's errors; everything
here is plain async Python, exercised by the e2e tests against the real apiserver.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.config_store.service import Credential
from app.core.observability.metrics import OPERATOR_RECONCILE_DURATION, OPERATOR_RECONCILES
from app.core.specs import AIModelRouteSpec, AIProviderSpec
from sapi_operator import credentials, routes
from sapi_operator.reconcile import (
    CredentialCheck,
    ObjectRef,
    Outcome,
    build_status,
    desired_state,
)
from sapi_operator.resources import AI_MODEL_ROUTE_RESOURCE, AI_PROVIDER_KIND, AI_PROVIDER_RESOURCE
from sapi_operator.routes import ProviderView
from sapi_operator.runtime import CREDENTIALS_REVISION, Runtime
from sapi_operator.store import StoreUnavailable

log = logging.getLogger("sapi_operator")


@dataclass(frozen=True)
class Result:
    """A reconcile's status patch and whether Kopf should retry (and when)."""

    status: dict[str, Any]
    outcome: Outcome
    retry_after: float | None

    @property
    def permanent(self) -> bool:
        """Only a change of the resource can fix it."""
        return self.outcome.permanent


def ref_of(kind: str, body: Mapping[str, Any]) -> ObjectRef:
    """The identity of a resource body."""
    meta = body.get("metadata") or {}
    return ObjectRef(
        kind=kind,
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        uid=str(meta.get("uid", "")),
        generation=int(meta.get("generation") or 0),
    )


async def read_provider_secret(
    rt: Runtime, spec: AIProviderSpec, namespace: str
) -> credentials.SecretRead | None:
    """The Secret `spec` names, if opted in; None when the provider needs no key.

    A protected Secret (the release's own) is not even requested from the apiserver.
    """
    name = credentials.secret_name(spec)
    if name is None:
        return None
    if credentials.is_protected(namespace, name, rt.settings.operator_protected_secrets):
        return credentials.SecretRead(credentials.PROTECTED)
    return await rt.kube.read_secret(namespace, name)


async def _credential(
    rt: Runtime, spec: AIProviderSpec, namespace: str
) -> tuple[CredentialCheck, Credential | None]:
    read = await read_provider_secret(rt, spec, namespace)
    check = credentials.check(spec, namespace, read)
    if check.retry_after is not None:
        return check, None  # unknown: keep whatever is stored, retry
    return check, credentials.stored_credential(check, rt.keyring)


async def store_resource(
    rt: Runtime,
    kind: str,
    body: Mapping[str, Any],
    providers: Mapping[str, Iterable[ProviderView]] | None = None,
) -> Result:
    """Validate, write the owned row, and compute the status (under the resource's lock).

    `providers`: the watched AIProviders by name, to say which targets of an AIModelRoute
    do not resolve (sapi_operator/routes.py).
    """
    ref = ref_of(kind, body)
    desired = desired_state(
        ref, body.get("spec") or {}, allowed_http_hosts=rt.settings.ai_allowed_http_hosts
    )
    check: CredentialCheck | None = None
    credential: Credential | None = None
    if isinstance(desired, Outcome):
        outcome, model = desired, None
    else:
        model = desired.model
        async with rt.lock(ref):
            if kind == AI_PROVIDER_KIND:
                assert isinstance(model, AIProviderSpec)
                check, credential = await _credential(rt, model, ref.namespace)
            outcome = await asyncio.to_thread(rt.store.apply, desired, credential)
    missing = None
    if isinstance(model, AIModelRouteSpec) and providers is not None:
        missing = routes.unresolved(((t.provider, t.model) for t in model.targets), providers)
    previous = (body.get("status") or {}).get("conditions") or []
    status = build_status(
        ref,
        outcome,
        now=datetime.now(UTC),
        previous=previous,
        model=model,
        credential=check,
        credential_version=credential.version if credential else None,
        unresolved=missing,
    )
    retry = outcome.retry_after
    if retry is None and check is not None:
        retry = check.retry_after
    return Result(status, outcome, retry)


async def reconcile(
    rt: Runtime,
    kind: str,
    body: Mapping[str, Any],
    providers: Mapping[str, Iterable[ProviderView]] | None = None,
) -> Result:
    """`store_resource` plus the reconcile metrics."""
    began = time.perf_counter()
    result = await store_resource(rt, kind, body, providers)
    if result.permanent:
        outcome = "permanent_error"
    elif result.retry_after is not None:
        outcome = "temporary_error"
    else:
        outcome = "success"
    OPERATOR_RECONCILES.labels(kind=kind, outcome=outcome).inc()
    OPERATOR_RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - began)
    return result


async def finalize(rt: Runtime, kind: str, body: Mapping[str, Any]) -> bool:
    """Delete the row the resource owns; raises `StoreUnavailable` to be retried."""
    ref = ref_of(kind, body)
    async with rt.lock(ref):
        removed = await asyncio.to_thread(rt.store.remove, ref)
    rt.forget(ref)
    return removed


async def nudge_providers(
    rt: Runtime, namespace: str, providers: Iterable[str], revision: str
) -> list[str]:
    """Make Kopf re-run the handler of each provider using a changed Secret."""
    nudged = []
    for name in sorted(set(providers)):
        await rt.kube.annotate(
            AI_PROVIDER_RESOURCE, namespace, name, {CREDENTIALS_REVISION: revision}
        )
        nudged.append(name)
    return nudged


async def nudge_routes(
    rt: Runtime,
    names: Iterable[tuple[str, str, tuple[tuple[str, str], ...]]],
    providers: Mapping[str, Iterable[ProviderView]],
) -> list[str]:
    """Set each route's targets digest (namespace, name, targets); a changed digest makes
    Kopf re-run its handler, an unchanged one is a no-op patch. The routes patched."""
    nudged = []
    for namespace, name, targets in sorted(set(names)):
        digest = routes.revision(routes.unresolved(targets, providers))
        await rt.kube.annotate(
            AI_MODEL_ROUTE_RESOURCE, namespace, name, {routes.TARGETS_REVISION: digest}
        )
        nudged.append(f"{namespace}/{name}")
    return nudged


__all__ = [
    "Result",
    "StoreUnavailable",
    "finalize",
    "nudge_providers",
    "nudge_routes",
    "read_provider_secret",
    "reconcile",
    "ref_of",
]
