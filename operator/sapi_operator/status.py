"""What the operator writes to `.status`: typed models (the CRD's status schema comes from
them) and the catalogue of conditions and reasons, each with what a human should do.

Conditions follow `metav1.Condition` (KEP-1623): `type`, `status`, `reason` (CamelCase),
`message`, `lastTransitionTime`, `observedGeneration`. Never free-form blobs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

READY: Final = "Ready"
ENFORCED: Final = "Enforced"
CREDENTIAL_VALID: Final = "CredentialValid"
DEGRADED: Final = "Degraded"

TRUE: Final = "True"
FALSE: Final = "False"
UNKNOWN: Final = "Unknown"

_REASON_PATTERN: Final = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"


class Condition(BaseModel):
    """One observation about the resource (metav1.Condition)."""

    model_config = ConfigDict(extra="forbid")

    type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9]*$", max_length=64)] = (
        Field(description="Ready, Enforced, CredentialValid or Degraded")
    )
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown")
    reason: Annotated[str, StringConstraints(pattern=_REASON_PATTERN, max_length=1024)] = Field(
        description="Why, in one CamelCase word (see the reasons table)"
    )
    message: Annotated[str, StringConstraints(max_length=32768)] = Field(
        description="What happened and what to do, for humans"
    )
    lastTransitionTime: datetime = Field(description="When status last changed")
    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation this condition was computed from"
    )


class TopCaller(BaseModel):
    """A caller among the busiest of the last hour."""

    model_config = ConfigDict(extra="forbid")

    caller: Annotated[str, StringConstraints(max_length=253)] = Field(
        description="`user:<id>`, `api_key:<id>` or `anonymous` (the rate limiter's caller "
        "key); never a token or key"
    )
    requests: int = Field(ge=0, description="Requests in the last hour")


class ResourceStatus(BaseModel):
    """What every kind reports."""

    model_config = ConfigDict(extra="forbid")

    observedGeneration: int | None = Field(
        default=None, ge=0, description="metadata.generation the operator last acted on"
    )
    configGeneration: int | None = Field(
        default=None,
        ge=0,
        description="Config-store generation holding this spec; API processes serve it once "
        "their snapshot reaches this generation",
    )
    conditions: list[Condition] = Field(
        default_factory=list, max_length=8, description="Ready plus kind-specific conditions"
    )


class ApiVersionStatus(ResourceStatus):
    """Status of an `ApiVersion`."""

    requestsLastHour: int | None = Field(
        default=None,
        ge=0,
        description="Requests to /v{major} in the last hour, summed over every API process "
        "(approximate: each flushes its counts every USAGE_FLUSH_SECONDS)",
    )
    topCallers: list[TopCaller] = Field(
        default_factory=list, max_length=10, description="Busiest callers of the last hour"
    )


class RateLimitPolicyStatus(ResourceStatus):
    """Status of a `RateLimitPolicy`."""

    shadowRejectsLastHour: int | None = Field(
        default=None,
        ge=0,
        description="Requests the policy would have rejected in the last hour (Shadow mode)",
    )


class AIProviderStatus(ResourceStatus):
    """Status of an `AIProvider`."""

    credentialVersion: Annotated[str, StringConstraints(max_length=64)] | None = Field(
        default=None,
        description="Keyed hash of the stored key; changes when the Secret's value (or the "
        "encryption key) changes. Never the key",
    )
    lastSyncedAt: datetime | None = Field(
        default=None, description="When the key was last read from the Secret and stored"
    )


class UnresolvedTarget(BaseModel):
    """A target of a route that the API skips, and why."""

    model_config = ConfigDict(extra="forbid")

    provider: Annotated[str, StringConstraints(max_length=253)] = Field(
        description="The target's AIProvider name"
    )
    model: Annotated[str, StringConstraints(max_length=256)] = Field(
        description="The target's model"
    )
    reason: Literal["ProviderNotFound", "ModelNotOffered", "ProviderNotReady"] = Field(
        description="ProviderNotFound: no AIProvider of that name is watched; "
        "ModelNotOffered: the provider does not list the model; ProviderNotReady: the "
        "provider is not Ready (not stored, or no usable key)"
    )


class AIModelRouteStatus(ResourceStatus):
    """Status of an `AIModelRoute`."""

    unresolvedTargets: list[UnresolvedTarget] = Field(
        default_factory=list,
        max_length=20,
        description="Targets the API skips (re-evaluated when an AIProvider changes); "
        "empty when every target resolves",
    )


STATUS_MODELS: Final[dict[str, type[ResourceStatus]]] = {
    "ApiVersion": ApiVersionStatus,
    "RateLimitPolicy": RateLimitPolicyStatus,
    "AIProvider": AIProviderStatus,
    "AIModelRoute": AIModelRouteStatus,
}


@dataclass(frozen=True)
class Reason:
    """A reason a condition can carry and what a human should do about it."""

    condition: str
    status: str
    name: str
    meaning: str


def _r(condition: str, status: str, name: str, meaning: str) -> Reason:
    return Reason(condition, status, name, meaning)


#: Every reason the operator writes (docs/crds.md is generated from this table).
REASONS: Final[tuple[Reason, ...]] = (
    _r(
        READY,
        TRUE,
        "Reconciled",
        "Stored in the config store; API processes apply it "
        "within about a second (Redis announcement) or one poll interval.",
    ),
    _r(
        READY,
        FALSE,
        "InvalidSpec",
        "The spec breaks a rule the CRD schema cannot express; "
        "the message names each field. Fix the spec; nothing was stored.",
    ),
    _r(
        READY,
        FALSE,
        "OwnedByAdminApi",
        "An object of this kind and name was created "
        "through the admin API. Delete it there (or rename this resource).",
    ),
    _r(
        READY,
        FALSE,
        "OwnedByOtherNamespace",
        "A resource of this kind and name in another "
        "namespace owns the config row: names are unique across namespaces. Rename one.",
    ),
    _r(
        READY,
        FALSE,
        "VersionConflict",
        "Another ApiVersion already describes the same `/v{major}` prefix. Delete one of them.",
    ),
    _r(
        READY,
        FALSE,
        "StoreUnavailable",
        "PostgreSQL could not be reached; the operator "
        "retries by itself. Check the database if it persists.",
    ),
    _r(
        READY,
        FALSE,
        "CredentialInvalid",
        "Stored, but unusable without a key: see the CredentialValid condition.",
    ),
    _r(
        READY,
        FALSE,
        "UnresolvedTargets",
        "An AIModelRoute is stored, but none of its targets resolves, so its name answers "
        "404: see status.unresolvedTargets. Create (or fix) the AIProviders it names; the "
        "route is re-evaluated when they change.",
    ),
    _r(ENFORCED, TRUE, "Enforcing", "Requests over the limits are rejected with 429."),
    _r(
        ENFORCED,
        FALSE,
        "ShadowMode",
        "`mode: Shadow`: would-be rejections are only counted "
        "(status.shadowRejectsLastHour). Set `mode: Enforce` to block.",
    ),
    _r(ENFORCED, FALSE, "NotReconciled", "The policy is not stored; see the Ready condition."),
    _r(
        DEGRADED,
        TRUE,
        "UnresolvedTargets",
        "Some targets of the route do not resolve (status.unresolvedTargets names each, "
        "with why); the API skips them and serves the name with the rest. Create the "
        "AIProvider, add the model to its `models`, or make it Ready.",
    ),
    _r(
        DEGRADED,
        FALSE,
        "TargetsResolved",
        "Every target names a Ready AIProvider that lists its model.",
    ),
    _r(
        CREDENTIAL_VALID,
        TRUE,
        "SecretResolved",
        "The key was read from the Secret and "
        "stored encrypted; the Secret is watched and changes re-sync it.",
    ),
    _r(
        CREDENTIAL_VALID,
        TRUE,
        "NotRequired",
        "The provider needs no key (`Echo`, or no credentialsSecretRef).",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretNotFound",
        "The Secret named in "
        "spec.credentialsSecretRef does not exist in this namespace. Create it; the operator "
        "picks it up by itself.",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretNotOptedIn",
        'The Secret lacks the label `structured-api.io/ai-credentials: "true"`, so the '
        "operator does not read it (any other Secret of the namespace could be named "
        "otherwise). If it holds only provider keys, label it; the operator picks it up.",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretProtected",
        "The Secret is one of the release's own (database and Redis URLs, SECRET_KEY, "
        "encryption keys; `OPERATOR_PROTECTED_SECRETS`): never read as a provider key, even "
        "when labelled. Put the API key in a Secret of its own.",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretKeyMissing",
        "The opted-in Secret has no such key (its key names are not shown: the status is "
        "readable by more people than the Secret). Add the key or fix "
        "credentialsSecretRef.key.",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretKeyEmpty",
        "The key is present but empty or not UTF-8 text. Put the API key in it.",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretForbidden",
        "The operator may not read the Secret "
        "(RBAC). Grant it get/list/watch on secrets in this namespace (the chart's Role).",
    ),
    _r(
        CREDENTIAL_VALID,
        FALSE,
        "SecretUnreadable",
        "The Kubernetes API failed while reading the Secret; the operator retries by itself.",
    ),
)
REASON_NAMES: Final = frozenset(r.name for r in REASONS)
#: Conditions each kind reports, in the order they appear in `.status.conditions`.
KIND_CONDITIONS: Final[dict[str, tuple[str, ...]]] = {
    "ApiVersion": (READY,),
    "RateLimitPolicy": (READY, ENFORCED),
    "AIProvider": (READY, CREDENTIAL_VALID),
    "AIModelRoute": (READY, DEGRADED),
}
