"""The periodic drift check: put back config rows changed or deleted behind the operator.

Every `OPERATOR_DRIFT_INTERVAL` seconds, per kind: read the operator's rows, list the
resources, and compare (`plan`, pure). A resource whose current generation is reconciled
but whose row is missing or different is re-applied under its lock, after a fresh GET
(so a handler that just stored a newer spec is never overwritten with an older one); a
row whose resource is gone is deleted; an AIProvider whose Secret no longer matches the
stored key version is nudged so its handler re-syncs it. Live usage goes into status on
the same pass (sapi_operator/usage.py): shadow-reject counts into
`RateLimitPolicy.status.shadowRejectsLastHour`, requests and busiest callers into
`ApiVersion.status.requestsLastHour` / `topCallers`; an unreachable Redis leaves the
last values in place.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from app.core.observability.metrics import OPERATOR_DRIFT_REPAIRS
from app.core.specs import AIProviderSpec, ApiVersionSpec
from app.core.specs.rate_limit import RateLimitPolicySpec
from sapi_operator import credentials, usage
from sapi_operator.actions import nudge_providers, read_provider_secret, ref_of
from sapi_operator.kube import KubeError
from sapi_operator.reconcile import Desired, desired_state, is_reconciled
from sapi_operator.resources import (
    AI_PROVIDER_KIND,
    API_VERSION_KIND,
    RATE_LIMIT_POLICY_KIND,
    RESOURCES,
    Kind,
)
from sapi_operator.runtime import Runtime
from sapi_operator.store import StoredRow, StoreUnavailable

log = logging.getLogger("sapi_operator.drift")


@dataclass
class Plan:
    """What one pass should do for one kind."""

    repairs: list[Desired] = field(default_factory=list)
    orphans: list[StoredRow] = field(default_factory=list)
    #: Reconciled resources with their row (None if missing), for kind-specific checks.
    live: list[tuple[Desired, StoredRow | None]] = field(default_factory=list)


def plan(
    resource: Kind,
    objects: Sequence[Mapping[str, Any]],
    rows: Sequence[StoredRow],
    *,
    in_scope: Any,
) -> Plan:
    """Compare resources with rows (pure): what to re-apply, what to delete."""
    out = Plan()
    by_name = {r.name: r for r in rows}
    present: set[tuple[str, str]] = set()
    for body in objects:
        ref = ref_of(resource.kind, body)
        present.add((ref.namespace, ref.name))
        if (body.get("metadata") or {}).get("deletionTimestamp") or not is_reconciled(body):
            continue  # being deleted, or its handler has not (successfully) run yet
        desired = desired_state(ref, body.get("spec") or {})
        if not isinstance(desired, Desired):
            continue
        row = by_name.get(ref.name)
        if row is not None and row.namespace != ref.namespace:
            continue  # another namespace owns the name: the handler reports that
        out.live.append((desired, row))
        if row is None or row.spec != desired.spec or row.uid != ref.uid:
            out.repairs.append(desired)
    for row in rows:
        if in_scope(row.namespace) and (row.namespace, row.name) not in present:
            out.orphans.append(row)
    return out


async def _repair(rt: Runtime, resource: Kind, desired: Desired) -> bool:
    ref = desired.ref
    async with rt.lock(ref):
        fresh = await rt.kube.get_object(resource, ref.namespace, ref.name)
        if fresh is None or not is_reconciled(fresh):
            return False
        again = desired_state(ref_of(resource.kind, fresh), fresh.get("spec") or {})
        if not isinstance(again, Desired):
            return False
        # credential=None keeps the stored key; a key drift is handled by the nudge below.
        outcome = await asyncio.to_thread(rt.store.apply, again, None)
    return outcome.ready and outcome.changed


async def _check_credentials(rt: Runtime, live: list[tuple[Desired, StoredRow | None]]) -> int:
    nudged = 0
    for desired, row in live:
        spec = desired.model
        assert isinstance(spec, AIProviderSpec)
        read = await read_provider_secret(rt, spec, desired.ref.namespace)
        check = credentials.check(spec, desired.ref.namespace, read)
        if check.retry_after is not None:
            continue
        want = rt.keyring.version(check.plaintext) if check.plaintext else None
        have = row.credential_version if row is not None else None
        if want != have:
            await nudge_providers(
                rt, desired.ref.namespace, [desired.ref.name], f"drift-{time.time_ns()}"
            )
            nudged += 1
    return nudged


def _statuses(
    objects: Sequence[Mapping[str, Any]],
) -> list[tuple[tuple[str | None, str | None], Mapping[str, Any]]]:
    """((namespace, name), status) of every listed object (status {} when it has none)."""
    out = []
    for o in objects:
        meta = o.get("metadata") or {}
        out.append(((meta.get("namespace"), meta.get("name")), o.get("status") or {}))
    return out


async def _refresh_usage(
    rt: Runtime,
    resource: Kind,
    live: list[tuple[Desired, StoredRow | None]],
    objects: Sequence[Mapping[str, Any]],
) -> None:
    current = {ref: status.get("shadowRejectsLastHour") for ref, status in _statuses(objects)}
    for desired, _row in live:
        assert isinstance(desired.model, RateLimitPolicySpec)
        count = await asyncio.to_thread(
            usage.shadow_rejects_last_hour, rt.usage_redis, desired.ref.name
        )
        if count is None or current.get((desired.ref.namespace, desired.ref.name)) == count:
            continue
        await rt.kube.patch_status(
            resource, desired.ref.namespace, desired.ref.name, {"shadowRejectsLastHour": count}
        )


async def _refresh_version_usage(
    rt: Runtime,
    resource: Kind,
    live: list[tuple[Desired, StoredRow | None]],
    objects: Sequence[Mapping[str, Any]],
) -> None:
    current = dict(_statuses(objects))
    for desired, _row in live:
        assert isinstance(desired.model, ApiVersionSpec)
        found = await asyncio.to_thread(usage.version_usage, rt.usage_redis, desired.model.major)
        ref = desired.ref
        have = current.get((ref.namespace, ref.name)) or {}
        if found is None or all(have.get(k) == v for k, v in found.items()):
            continue
        await rt.kube.patch_status(resource, ref.namespace, ref.name, found)


async def check_kind(rt: Runtime, resource: Kind) -> int:
    """One pass over one kind; returns the number of repairs (each counted as it happens)."""
    rows = await asyncio.to_thread(rt.store.rows, resource.kind)
    objects = await rt.kube.list_objects(resource, rt.namespaces)
    todo = plan(resource, objects, rows, in_scope=rt.in_scope)
    repairs = OPERATOR_DRIFT_REPAIRS.labels(kind=resource.kind)
    repaired = 0
    for desired in todo.repairs:
        if await _repair(rt, resource, desired):
            repairs.inc()
            log.warning("drift repaired: %s row differed from its resource", desired.ref.label)
            repaired += 1
    for row in todo.orphans:
        if await asyncio.to_thread(rt.store.remove_row, row):
            repairs.inc()
            log.warning(
                "drift repaired: %s %s/%s row had no resource", row.kind, row.namespace, row.name
            )
            repaired += 1
    if resource.kind == AI_PROVIDER_KIND:
        nudged = await _check_credentials(rt, todo.live)
        repairs.inc(nudged)
        repaired += nudged
    if resource.kind == RATE_LIMIT_POLICY_KIND:
        await _refresh_usage(rt, resource, todo.live, objects)
    if resource.kind == API_VERSION_KIND:
        await _refresh_version_usage(rt, resource, todo.live, objects)
    return repaired


async def check_all(rt: Runtime) -> dict[str, int]:
    """One pass over every kind; a failing kind is logged and retried next pass."""
    repairs: dict[str, int] = {}
    for resource in RESOURCES:
        try:
            repairs[resource.kind] = await check_kind(rt, resource)
        except (StoreUnavailable, KubeError) as exc:
            log.warning("drift check of %s skipped: %s", resource.plural, exc)
    rt.last_drift_check = time.monotonic()
    return repairs


async def run_forever(rt: Runtime) -> None:
    """Check every interval until cancelled."""
    interval = rt.settings.operator_drift_interval
    while True:
        await asyncio.sleep(interval)
        try:
            await check_all(rt)
        except Exception:  # the loop must survive a bug in one pass
            log.exception("drift check failed")
