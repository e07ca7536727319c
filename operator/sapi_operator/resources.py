"""The four custom resources: names, printer columns and the spec model behind each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel

from app.core.specs import KINDS

GROUP: Final = "structured-api.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
#: `kubectl get structured-api` lists every kind (docs/architecture.md).
CATEGORY: Final = "structured-api"

API_VERSION_KIND: Final = "ApiVersion"
RATE_LIMIT_POLICY_KIND: Final = "RateLimitPolicy"
AI_PROVIDER_KIND: Final = "AIProvider"
AI_MODEL_ROUTE_KIND: Final = "AIModelRoute"


def _ready(name: str, condition: str, priority: int = 0) -> dict[str, Any]:
    column: dict[str, Any] = {
        "name": name,
        "type": "string",
        "jsonPath": f'.status.conditions[?(@.type=="{condition}")].status',
    }
    if priority:
        column["priority"] = priority
    return column


_READY_REASON: Final = {
    "name": "Reason",
    "type": "string",
    "priority": 1,
    "jsonPath": '.status.conditions[?(@.type=="Ready")].reason',
}
_AGE: Final = {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}


@dataclass(frozen=True)
class Kind:
    """One custom resource kind as the operator, the CRD and the docs see it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    columns: tuple[dict[str, Any], ...]
    summary: str

    @property
    def crd_name(self) -> str:
        """`<plural>.<group>`, the CRD's metadata.name."""
        return f"{self.plural}.{GROUP}"

    @property
    def spec_model(self) -> type[BaseModel]:
        """The Pydantic model validating `.spec` (shared with the admin API)."""
        model: type[BaseModel] = KINDS[self.kind]  # type: ignore[assignment]
        return model


API_VERSION_RESOURCE: Final = Kind(
    kind=API_VERSION_KIND,
    plural="apiversions",
    singular="apiversion",
    short_names=("apiv",),
    columns=(
        {"name": "Version", "type": "string", "jsonPath": ".spec.version"},
        {"name": "Phase", "type": "string", "jsonPath": ".spec.phase"},
        {"name": "Sunset", "type": "string", "format": "date-time", "jsonPath": ".spec.sunsetAt"},
        _ready("Ready", "Ready"),
        _READY_REASON,
        {
            "name": "Requests-1h",
            "type": "integer",
            "priority": 1,
            "jsonPath": ".status.requestsLastHour",
        },
        _AGE,
    ),
    summary="The lifecycle of one `MAJOR.MINOR` API version: phase, deprecation and sunset "
    "dates, successor, brownouts. Drives the `Deprecation`, `Sunset` and `Link` headers, "
    "the `VERSION_DEPRECATED` warning and `410` after retirement.",
)
RATE_LIMIT_POLICY_RESOURCE: Final = Kind(
    kind=RATE_LIMIT_POLICY_KIND,
    plural="ratelimitpolicies",
    singular="ratelimitpolicy",
    short_names=("rlp",),
    columns=(
        {"name": "Mode", "type": "string", "jsonPath": ".spec.mode"},
        {"name": "Priority", "type": "integer", "jsonPath": ".spec.priority"},
        {"name": "Failure", "type": "string", "priority": 1, "jsonPath": ".spec.failureMode"},
        _ready("Ready", "Ready"),
        _ready("Enforced", "Enforced", priority=1),
        _READY_REASON,
        {
            "name": "Shadow-Rejects-1h",
            "type": "integer",
            "priority": 1,
            "jsonPath": ".status.shadowRejectsLastHour",
        },
        _AGE,
    ),
    summary="Request and AI-token limits matched on API version, path, method and role, "
    "keyed by user, API key, IP, role, a header or globally; `Shadow` mode only counts.",
)
AI_PROVIDER_RESOURCE: Final = Kind(
    kind=AI_PROVIDER_KIND,
    plural="aiproviders",
    singular="aiprovider",
    short_names=("aip",),
    columns=(
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {"name": "Default-Model", "type": "string", "jsonPath": ".spec.defaultModel"},
        _ready("Credential", "CredentialValid"),
        _ready("Ready", "Ready"),
        _READY_REASON,
        _AGE,
    ),
    summary="One upstream AI provider: protocol, base URL, the Secret holding its key, "
    "models and prices, timeouts, retries, fallback priority and its own limits.",
)

AI_MODEL_ROUTE_RESOURCE: Final = Kind(
    kind=AI_MODEL_ROUTE_KIND,
    plural="aimodelroutes",
    singular="aimodelroute",
    short_names=("aimr",),
    columns=(
        {"name": "Model", "type": "string", "jsonPath": ".spec.model"},
        _ready("Ready", "Ready"),
        _READY_REASON,
        _AGE,
    ),
    summary="A public model name clients send and the provider models that serve it: "
    "ordered targets (provider and its model or Azure deployment) with fallback, optional "
    "weights, and the roles that may use it.",
)

RESOURCES: Final[tuple[Kind, ...]] = (
    API_VERSION_RESOURCE,
    RATE_LIMIT_POLICY_RESOURCE,
    AI_PROVIDER_RESOURCE,
    AI_MODEL_ROUTE_RESOURCE,
)
BY_KIND: Final = {r.kind: r for r in RESOURCES}
