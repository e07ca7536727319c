"""Specs of the runtime-config kinds: one source of truth for three front doors.

The same Pydantic models validate admin API bodies (`/v1/admin/...`), the config
store's rows, and generate the CRD schemas the operator ships (`structured-api.io`,
`v1alpha1`). Field names are the CRD's (camelCase). Cross-field rules are written
twice on purpose, once as a Pydantic validator and once as a CEL rule in
`x-kubernetes-validations`, so the apiserver refuses what the admin API refuses;
a test checks both sides agree.
"""

from app.core.specs.ai_provider import AIProviderSpec, ModelPrice, ProviderType, SecretRef
from app.core.specs.ai_route import AIModelRouteSpec, RouteTarget
from app.core.specs.api_version import ApiVersionSpec, Brownout, Phase
from app.core.specs.common import Duration, duration_seconds
from app.core.specs.rate_limit import (
    FailureMode,
    Limit,
    LimitMode,
    Match,
    RateLimitPolicySpec,
    Rule,
)

KINDS = {
    "ApiVersion": ApiVersionSpec,
    "RateLimitPolicy": RateLimitPolicySpec,
    "AIProvider": AIProviderSpec,
    "AIModelRoute": AIModelRouteSpec,
}

__all__ = [
    "KINDS",
    "AIModelRouteSpec",
    "AIProviderSpec",
    "ApiVersionSpec",
    "Brownout",
    "Duration",
    "FailureMode",
    "Limit",
    "LimitMode",
    "Match",
    "ModelPrice",
    "Phase",
    "ProviderType",
    "RateLimitPolicySpec",
    "RouteTarget",
    "Rule",
    "SecretRef",
    "duration_seconds",
]
