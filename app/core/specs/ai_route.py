"""`AIModelRoute`: a public model name and the provider models that serve it, in order.

    spec:
      model: chat-default                 # what clients send as `model`
      targets:                            # tried in this order, falling back on failure
        - {provider: openai-main, model: gpt-4o-mini, weight: 3}
        - {provider: azure-east, model: gpt4o-mini-prod, weight: 1}   # a deployment name
        - {provider: anthropic, model: claude-haiku-4-5}
      roles: []                           # who may use it; empty: every AI caller

Targets with a `weight` above 0 are tried first, in an order drawn at random for each
call with probability proportional to the weights; the others follow in list order. A
target's `model` must be one of its provider's `models` (its price comes from there);
a target whose provider or model is missing is skipped (the API logs a warning
naming it when it loads the config; the operator lists it in `status.unresolvedTargets`).
"""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, StringConstraints, model_validator

from app.core.specs.ai_provider import ModelName
from app.core.specs.common import ObjectName, SpecModel

RoleName = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]


class RouteTarget(SpecModel):
    """One provider model that can answer for the public name."""

    provider: ObjectName = Field(description="Name of an AIProvider")
    model: ModelName = Field(
        description="Model (Azure: deployment) as that provider names it; one of its models"
    )
    weight: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description="Share of first attempts among weighted targets; unset or 0: fallback only",
    )


class AIModelRouteSpec(SpecModel):
    """Spec of an `AIModelRoute` resource."""

    model: ModelName = Field(description="Public model name clients send")
    targets: list[RouteTarget] = Field(
        min_length=1, max_length=20, description="Provider models, in fallback order"
    )
    roles: list[RoleName] = Field(
        default_factory=list,
        max_length=20,
        description="Roles allowed to use the name (any of); empty: every caller with an AI scope",
    )
    description: str | None = Field(
        default=None, max_length=500, description="Shown by GET /openai/v1/models"
    )

    @model_validator(mode="after")
    def _unique_targets(self) -> Self:
        pairs = [(t.provider, t.model) for t in self.targets]
        if len(pairs) != len(set(pairs)):
            raise ValueError("each provider and model may appear once among targets")
        return self


CEL_RULES = [
    {
        "rule": "self.targets.all(t, self.targets.exists_one(u, "
        "u.provider == t.provider && u.model == t.model))",
        "message": "each provider and model may appear once among targets",
    },
]
