"""Pure reconcile logic: a custom resource in; the row to store and the status out.

Nothing here talks to Kubernetes, PostgreSQL or Redis. The I/O layer (`store`, `kube`)
turns what it observed into an `Outcome`; `build_status` turns outcomes into
`.status`; the handlers only glue the two together.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel, ValidationError

from app.config_store.validation import normalised
from app.core import egress
from app.core.specs import AIModelRouteSpec, AIProviderSpec, RateLimitPolicySpec
from app.core.specs.rate_limit import LimitMode
from sapi_operator import status as st
from sapi_operator.resources import BY_KIND
from sapi_operator.routes import describe as describe_targets

#: Retry delays, seconds. A conflict clears when the other owner goes away; Kopf does not
#: wake a delayed handler on a new event, so this is also how long that takes to show.
CONFLICT_RETRY: Final = 10.0
STORE_RETRY: Final = 5.0
SECRET_RETRY: Final = 10.0
_MAX_PROBLEMS: Final = 10


@dataclass(frozen=True)
class ObjectRef:
    """Which custom resource (and which generation of it) is being reconciled."""

    kind: str
    namespace: str
    name: str
    uid: str
    generation: int

    @property
    def label(self) -> str:
        """`Kind namespace/name`, for logs and messages."""
        return f"{self.kind} {self.namespace}/{self.name}"


@dataclass(frozen=True)
class Desired:
    """The config row a valid resource asks for."""

    ref: ObjectRef
    spec: dict[str, Any]
    model: BaseModel


@dataclass(frozen=True)
class Outcome:
    """What reconciling did, as the Ready condition will say it."""

    ready: bool
    reason: str
    message: str
    config_generation: int | None = None
    #: Seconds until a retry (`TemporaryError`); None and not ready means permanent.
    retry_after: float | None = None
    #: The store was written (False when the row already matched).
    changed: bool = False

    @property
    def permanent(self) -> bool:
        """A failure only a change of the resource can fix."""
        return not self.ready and self.retry_after is None


@dataclass(frozen=True)
class CredentialCheck:
    """Whether an AIProvider's key could be resolved; the key itself is never in `repr`."""

    valid: bool
    reason: str
    message: str
    plaintext: str | None = field(default=None, repr=False)
    retry_after: float | None = None


def _problems(exc: ValidationError) -> list[str]:
    out = []
    for error in exc.errors(include_url=False, include_input=False):
        where = ".".join(str(p) for p in ("spec", *error["loc"]))
        message = str(error["msg"]).removeprefix("Value error, ")
        out.append(f"{where}: {message}")
    return out


def _invalid(problems: Sequence[str]) -> Outcome:
    shown = "; ".join(problems[:_MAX_PROBLEMS])
    more = f" (and {len(problems) - _MAX_PROBLEMS} more)" if len(problems) > _MAX_PROBLEMS else ""
    return Outcome(False, "InvalidSpec", f"Fix the spec: {shown}{more}. Nothing was stored.")


def desired_state(
    ref: ObjectRef, spec: Mapping[str, Any], *, allowed_http_hosts: Collection[str] | None = None
) -> Desired | Outcome:
    """The row to store, or a permanent `InvalidSpec` outcome naming each bad field.

    With `allowed_http_hosts` (the operator's `AI_ALLOWED_HTTP_HOSTS`) an AIProvider's plain-http
    baseURL off that list is invalid too, before its Secret is read.
    """
    model_class = BY_KIND[ref.kind].spec_model
    try:
        model = model_class.model_validate(dict(spec))
    except ValidationError as exc:
        return _invalid(_problems(exc))
    if allowed_http_hosts is not None and isinstance(model, AIProviderSpec) and model.baseURL:
        problem = egress.policy_problem(str(model.baseURL), allowed_http_hosts)
        if problem is not None:
            return _invalid([f"spec.baseURL: {problem}"])
    return Desired(ref, normalised(model), model)


def applied(config_generation: int, *, changed: bool) -> Outcome:
    """The row matches the resource."""
    verb = "Stored" if changed else "Already stored"
    return Outcome(
        True,
        "Reconciled",
        f"{verb} at config generation {config_generation}; API processes apply it within "
        "about a second.",
        config_generation,
        changed=changed,
    )


def conflict(ref: ObjectRef, owner: Mapping[str, Any], details: Mapping[str, Any]) -> Outcome:
    """The row belongs to someone else; retried, since the owner may go away."""
    if "version" in details and details.get("name") != ref.name:
        major = str(details.get("version", "")).split(".")[0]
        return Outcome(
            False,
            "VersionConflict",
            f"ApiVersion {details.get('name')!r} already describes /v{major}; one ApiVersion "
            "per major version: delete one of them.",
            retry_after=CONFLICT_RETRY,
        )
    if owner.get("type") == "admin":
        return Outcome(
            False,
            "OwnedByAdminApi",
            f"{ref.kind} {ref.name!r} was created through the admin API; delete it there "
            "(DELETE /v1/admin/...) or rename this resource.",
            retry_after=CONFLICT_RETRY,
        )
    return Outcome(
        False,
        "OwnedByOtherNamespace",
        f"{ref.kind} {ref.name!r} is declared by a resource in namespace "
        f"{owner.get('namespace')!r}; names are unique across namespaces, rename one.",
        retry_after=CONFLICT_RETRY,
    )


def store_unavailable(error: str) -> Outcome:
    """PostgreSQL (or the store) failed; retried soon."""
    return Outcome(
        False,
        "StoreUnavailable",
        f"The config store could not be written ({error}); retrying in {STORE_RETRY:.0f} s.",
        retry_after=STORE_RETRY,
    )


def _condition(
    type_: str,
    ok: bool,
    reason: str,
    message: str,
    generation: int,
    now: datetime,
    previous: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    status = st.TRUE if ok else st.FALSE
    before = previous.get(type_, {})
    # lastTransitionTime moves only when status flips (metav1.Condition semantics).
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "observedGeneration": generation,
    }


def build_status(
    ref: ObjectRef,
    outcome: Outcome,
    *,
    now: datetime,
    previous: Sequence[Mapping[str, Any]] = (),
    model: BaseModel | None = None,
    credential: CredentialCheck | None = None,
    credential_version: str | None = None,
    unresolved: Sequence[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """`.status` after reconciling `ref` (a merge patch: None removes a field).

    `unresolved`: an AIModelRoute's targets that do not resolve (sapi_operator/routes.py).
    """
    before = {str(c.get("type")): c for c in previous}

    def cond(type_: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        return _condition(type_, ok, reason, message, ref.generation, now, before)

    ready_ok, ready_reason, ready_message = outcome.ready, outcome.reason, outcome.message
    if outcome.ready and credential is not None and not credential.valid:
        ready_ok, ready_reason = False, "CredentialInvalid"
        ready_message = f"{outcome.message} Unusable until the key resolves: {credential.message}"
    targets = len((model.targets if isinstance(model, AIModelRouteSpec) else None) or ())
    if outcome.ready and unresolved and len(unresolved) >= targets:
        ready_ok, ready_reason = False, "UnresolvedTargets"
        ready_message = (
            f"{outcome.message} No target resolves, so the name answers 404: "
            f"{describe_targets(unresolved)}."
        )
    conditions = [cond(st.READY, ready_ok, ready_reason, ready_message)]
    status: dict[str, Any] = {"observedGeneration": ref.generation}
    if outcome.config_generation is not None:
        status["configGeneration"] = outcome.config_generation
    if ref.kind == "RateLimitPolicy":
        conditions.append(_enforced(outcome, model, cond))
    if ref.kind == "AIProvider" and credential is not None:
        conditions.append(
            cond(st.CREDENTIAL_VALID, credential.valid, credential.reason, credential.message)
        )
        synced = credential.valid and credential.plaintext is not None and outcome.ready
        status["credentialVersion"] = credential_version if synced else None
        if synced:
            status["lastSyncedAt"] = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    if ref.kind == "AIModelRoute" and unresolved is not None:
        status["unresolvedTargets"] = [dict(u) for u in unresolved]
        conditions.append(_degraded(unresolved, targets, cond))
    status["conditions"] = conditions
    return status


def _degraded(unresolved: Sequence[Mapping[str, str]], targets: int, cond: Any) -> dict[str, Any]:
    if not unresolved:
        return dict(cond(st.DEGRADED, False, "TargetsResolved", "Every target resolves."))
    return dict(
        cond(
            st.DEGRADED,
            True,
            "UnresolvedTargets",
            f"{len(unresolved)} of {targets} targets do not resolve and are skipped: "
            f"{describe_targets(unresolved)}. See status.unresolvedTargets.",
        )
    )


def _enforced(outcome: Outcome, model: BaseModel | None, cond: Any) -> dict[str, Any]:
    if not outcome.ready or not isinstance(model, RateLimitPolicySpec):
        return dict(cond(st.ENFORCED, False, "NotReconciled", "Not stored; see Ready."))
    if model.mode is LimitMode.SHADOW:
        return dict(
            cond(
                st.ENFORCED,
                False,
                "ShadowMode",
                "mode is Shadow: would-be rejections are counted in "
                "status.shadowRejectsLastHour, never blocked. Set mode: Enforce to block.",
            )
        )
    return dict(cond(st.ENFORCED, True, "Enforcing", "Requests over the limits get 429."))


def is_reconciled(body: Mapping[str, Any]) -> bool:
    """True when the status says the current generation was stored (Ready=True)."""
    status = body.get("status") or {}
    generation = (body.get("metadata") or {}).get("generation")
    if status.get("observedGeneration") != generation:
        return False
    ready = next((c for c in status.get("conditions", []) if c.get("type") == st.READY), None)
    if ready is None:
        return False
    # An AIProvider stored without a usable key, or a route none of whose targets
    # resolves, is still a row to keep in shape.
    return bool(
        ready.get("status") == st.TRUE
        or ready.get("reason") in ("CredentialInvalid", "UnresolvedTargets")
    )
