"""Leader election on a `coordination.k8s.io/v1` Lease: one replica reconciles, the rest wait.

The algorithm is client-go's (`k8s.io/client-go/tools/leaderelection`, `tryAcquireOrRenew`):

- The leader writes its identity and `renewTime` into the Lease every `retry_period`.
  Every write is a PUT carrying the `resourceVersion` it read, so of two candidates
  racing for the same Lease the apiserver accepts one and answers 409 to the other.
- A candidate takes the Lease when it is unheld (no `holderIdentity`, the state a leader
  leaves when it releases it on a clean shutdown) or when the record has not changed for
  `lease_duration` seconds *of the candidate's own clock* since it last saw it change: no
  clock comparison between machines, only a local monotonic clock.
- A leader that cannot renew for `renew_deadline` (< `lease_duration`) seconds stops
  leading before any candidate may take over, so two leaders never overlap as long as
  the clocks run at about the same rate (the assumption client-go documents).

Why a Lease and not Kopf's peering (docs/operator.md, "Several replicas"): Kopf's peering
pauses the *lower-priority* operators while a higher one is alive, and "if two operators
run with the same priority, all operators issue a warning and freeze" (Kopf docs,
"Peering"), which is exactly the state of two replicas of one Deployment. It also needs
Kopf's peering CRDs and, cluster-wide, a ClusterKopfPeering. A Lease is built into every
cluster, needs only `create` plus `get`/`update` on one named object, and its holder is
visible with `kubectl get lease`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from sapi_operator.kube import Kube, KubeError, LeaseConflict

log = logging.getLogger("sapi_operator.election")

#: client-go's `JitterFactor`: candidates retry after retry_period * [1, 1.2).
JITTER: Final = 0.2


def _now() -> str:
    """A `MicroTime` (RFC 3339 with microseconds, UTC) for the Lease's time fields."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class Timing:
    """How long a Lease lasts, how long a leader tries to renew it, how often anyone tries."""

    lease_duration: float = 8.0
    renew_deadline: float = 6.0
    retry_period: float = 1.0

    def __post_init__(self) -> None:
        # client-go's checks (leaderelection.NewLeaderElector).
        if not self.lease_duration > self.renew_deadline > self.retry_period * (1 + JITTER):
            msg = (
                "leader election needs lease_duration > renew_deadline > 1.2 * retry_period; "
                f"got {self.lease_duration}, {self.renew_deadline}, {self.retry_period}"
            )
            raise ValueError(msg)


class Elector:
    """Acquires, holds and releases one Lease for one identity."""

    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        timing: Timing,
        on_change: Callable[[bool, str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.timing = timing
        self.on_change = on_change
        self.leading = False
        self.holder = ""
        # The last record seen (by resourceVersion) and when, on the monotonic clock.
        self._observed_version = ""
        self._observed_at = 0.0

    async def acquire(self) -> None:
        """Return once this identity holds the Lease (waits as long as another leads)."""
        while True:
            if await self._try_acquire_or_renew():
                log.info("leader election: %s acquired lease %s", self.identity, self._where)
                return
            await asyncio.sleep(self.timing.retry_period * (1 + random.random() * JITTER))

    async def hold(self) -> None:
        """Renew every retry period; return when leadership is lost (the caller must stop)."""
        last_renewal = time.monotonic()
        while True:
            await asyncio.sleep(self.timing.retry_period)
            left = self.timing.renew_deadline - (time.monotonic() - last_renewal)
            renewed = False
            if left > 0:
                try:
                    renewed = await asyncio.wait_for(self._try_acquire_or_renew(), timeout=left)
                except TimeoutError:
                    renewed = False
            if renewed:
                last_renewal = time.monotonic()
            elif self.holder and self.holder != self.identity:
                log.error("leader election: %s took lease %s", self.holder, self._where)
                self._set(leading=False)
                return
            elif time.monotonic() - last_renewal >= self.timing.renew_deadline:
                log.error(
                    "leader election: could not renew lease %s for %.0f s",
                    self._where,
                    self.timing.renew_deadline,
                )
                self._set(leading=False)
                return

    async def release(self) -> None:
        """Give the Lease up (clean shutdown): a standby takes it on its next try."""
        if not self.leading:
            return
        self._set(leading=False)
        with contextlib.suppress(KubeError, LeaseConflict, TimeoutError):
            lease = await asyncio.wait_for(
                self.kube.get_lease(self.namespace, self.name), self.timing.retry_period
            )
            if lease is None or _spec(lease).get("holderIdentity") != self.identity:
                return
            # client-go's release: no holder, and a one-second duration.
            lease["spec"] = {
                **_spec(lease),
                "holderIdentity": None,
                "leaseDurationSeconds": 1,
                "renewTime": _now(),
            }
            await asyncio.wait_for(
                self.kube.replace_lease(self.namespace, self.name, lease), self.timing.retry_period
            )
            log.info("leader election: %s released lease %s", self.identity, self._where)

    # -- internals ---------------------------------------------------------------------------

    @property
    def _where(self) -> str:
        return f"{self.namespace}/{self.name}"

    def _set(self, *, leading: bool, holder: str | None = None) -> None:
        if holder is not None:
            self.holder = holder
        if leading != self.leading:
            self.leading = leading
        if self.on_change is not None:
            self.on_change(self.leading, self.holder)

    def _spec_for(self, old: dict[str, Any] | None) -> dict[str, Any]:
        now = _now()
        spec = {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, round(self.timing.lease_duration)),
            "acquireTime": now,
            "renewTime": now,
            "leaseTransitions": 0,
        }
        if old is not None:
            transitions = int(old.get("leaseTransitions") or 0)
            if old.get("holderIdentity") == self.identity:
                spec["acquireTime"] = old.get("acquireTime") or now
                spec["leaseTransitions"] = transitions
            else:
                spec["leaseTransitions"] = transitions + 1
        return spec

    async def _try_acquire_or_renew(self) -> bool:
        try:
            lease = await self.kube.get_lease(self.namespace, self.name)
            if lease is None:
                body = {
                    "apiVersion": "coordination.k8s.io/v1",
                    "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": self.namespace},
                    "spec": self._spec_for(None),
                }
                await self.kube.create_lease(self.namespace, body)
                self._set(leading=True, holder=self.identity)
                return True
            spec = _spec(lease)
            holder = str(spec.get("holderIdentity") or "")
            version = str(lease["metadata"].get("resourceVersion", ""))
            if version != self._observed_version:
                self._observed_version, self._observed_at = version, time.monotonic()
            self._set(leading=self.leading and holder == self.identity, holder=holder)
            duration = float(spec.get("leaseDurationSeconds") or self.timing.lease_duration)
            expired = time.monotonic() - self._observed_at >= duration
            if holder and holder != self.identity and not expired:
                return False
            lease["spec"] = self._spec_for(spec)
            updated = await self.kube.replace_lease(self.namespace, self.name, lease)
        except LeaseConflict:
            return False  # another candidate wrote first: read again on the next try
        except KubeError as exc:
            log.warning("leader election: lease %s: %s", self._where, exc)
            return False
        self._observed_version = str(updated["metadata"].get("resourceVersion", ""))
        self._observed_at = time.monotonic()
        self._set(leading=True, holder=self.identity)
        return True


def _spec(lease: dict[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return dict(spec) if isinstance(spec, dict) else {}
