"""`AIProvider`: one upstream AI provider, its models, prices and limits."""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Final, Self

from pydantic import (
    AnyHttpUrl,
    Field,
    StringConstraints,
    UrlConstraints,
    field_validator,
    model_validator,
)

from app.core import egress
from app.core.specs.common import ObjectName, SpecModel

#: A price in USD per million tokens, as a decimal string (no float rounding).
Price = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,6}(\.[0-9]{1,6})?$")]
ModelName = Annotated[str, StringConstraints(min_length=1, max_length=128, pattern=r"^[^\s]+$")]
#: A bounded length keeps the CRD's CEL rules on it within the apiserver's cost budget.
BaseURL = Annotated[AnyHttpUrl, UrlConstraints(max_length=2048)]


class ProviderType(StrEnum):
    """The wire protocol spoken to the provider."""

    OPENAI_COMPATIBLE = "OpenAICompatible"
    OPENAI = "OpenAI"
    AZURE_OPENAI = "AzureOpenAI"
    ANTHROPIC = "Anthropic"
    ECHO = "Echo"


class SecretRef(SpecModel):
    """Where the provider's key lives: a key of a Kubernetes Secret in the same namespace."""

    name: ObjectName = Field(description="Secret name")
    key: Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253)] = Field(
        default="apiKey", description="Key within the Secret"
    )


class ModelPrice(SpecModel):
    """A model the provider serves and its price."""

    name: ModelName = Field(description="Model name as the provider knows it")
    inputCostPer1M: Price = Field(default="0", description="USD per 1M input tokens")
    outputCostPer1M: Price = Field(default="0", description="USD per 1M output tokens")

    def cost(self, input_tokens: int, output_tokens: int) -> Decimal:
        """USD cost of one call."""
        million = Decimal(1_000_000)
        return (
            Decimal(self.inputCostPer1M) * input_tokens
            + Decimal(self.outputCostPer1M) * output_tokens
        ) / million


class ProviderLimits(SpecModel):
    """The provider's own limits, respected before calling it."""

    rpm: int | None = Field(default=None, ge=1, description="Requests per minute")
    tpm: int | None = Field(default=None, ge=1, description="Tokens per minute")


class AIProviderSpec(SpecModel):
    """Spec of an `AIProvider` resource."""

    type: ProviderType = Field(description="Protocol")
    baseURL: BaseURL | None = Field(
        default=None,
        description="API base URL (not for Echo); https unless the host is in "
        "AI_ALLOWED_HTTP_HOSTS, never a link-local or cloud metadata address",
    )
    credentialsSecretRef: SecretRef | None = Field(
        default=None,
        description="Secret holding the API key (not for Echo); the operator reads it only "
        'if it carries the label structured-api.io/ai-credentials: "true"',
    )
    models: list[ModelPrice] = Field(min_length=1, max_length=100, description="Models served")
    defaultModel: ModelName | None = Field(
        default=None, description="Model used when a request names none; one of models"
    )
    timeoutSeconds: float = Field(default=30, gt=0, le=600, description="Per-call timeout")
    maxRetries: int = Field(default=2, ge=0, le=10, description="Retries on 429/5xx/timeouts")
    priority: int = Field(
        default=10, ge=0, le=10_000, description="Lower is tried first among providers of a model"
    )
    limits: ProviderLimits = Field(default_factory=ProviderLimits, description="Provider limits")

    @model_validator(mode="after")
    def _check(self) -> Self:
        names = [m.name for m in self.models]
        if len(names) != len(set(names)):
            raise ValueError("model names must be unique")
        if self.defaultModel is not None and self.defaultModel not in names:
            raise ValueError("defaultModel must be one of models")
        if self.type is not ProviderType.ECHO and self.baseURL is None:
            raise ValueError("baseURL is required unless type is Echo")
        return self

    @field_validator("baseURL")
    @classmethod
    def _check_base_url(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        # Checked on the normalised URL: 0xa9fea9fe and 2852039166 are 169.254.169.254.
        problem = egress.static_problem(str(value)) if value is not None else None
        if problem is not None:
            raise ValueError(problem)
        return value

    def origin(self) -> str | None:
        """`scheme://host:port` of `baseURL` (None for Echo): where the key is sent."""
        return egress.origin(str(self.baseURL)) if self.baseURL is not None else None

    def model(self, name: str | None) -> ModelPrice | None:
        """The named model (or the default one), if served."""
        wanted = name or self.defaultModel or self.models[0].name
        return next((m for m in self.models if m.name == wanted), None)


def _literal(text: str) -> str:
    return re.escape(text).replace("\\:", ":")


# A URL whose host names, as written, a link-local address (169.254.0.0/16; fe80::/10 is
# fe80: to febf:) or a metadata endpoint of app/core/egress.py. The CRD checks it with a
# regular expression on the bounded baseURL string: Kubernetes' URL and IP CEL functions
# return strings of unbounded estimated size, and a rule built on them exceeds the
# apiserver's CEL cost budget more than a hundredfold.
_REFUSED_HOST: Final = "|".join(
    [
        r"169\.254\.[0-9]{1,3}\.[0-9]{1,3}\.?",
        r"\[(?i:fe[89ab][0-9a-f]:[^\]]*)\]",
        *(
            _literal(str(a)) + r"\.?" if a.version == 4 else r"\[(?i:" + _literal(str(a)) + r")\]"
            for a in sorted(egress.METADATA_ADDRESSES, key=str)
        ),
        *(r"(?i:" + _literal(h) + r")\.?" for h in sorted(egress.METADATA_HOSTS)),
    ]
)
REFUSED_URL_PATTERN: Final = (
    rf"^[a-zA-Z][a-zA-Z0-9+.-]*://([^/?#@]*@)?({_REFUSED_HOST})(:[0-9]*)?([/?#].*)?$"
)
CEL_RULES = [
    {
        "rule": "self.models.all(m, self.models.exists_one(n, n.name == m.name))",
        "message": "model names must be unique",
    },
    {
        "rule": "!has(self.defaultModel) || self.models.exists(m, m.name == self.defaultModel)",
        "message": "defaultModel must be one of models",
    },
    {
        "rule": "self.type == 'Echo' || has(self.baseURL)",
        "message": "baseURL is required unless type is Echo",
    },
    # The static half of app/core/egress.py (the https allow-list is a process setting,
    # checked by the operator). These rules see the URL as written: a disguised address
    # (0xa9fea9fe, ::ffff:169.254.169.254) passes them and is refused by the spec model the
    # operator validates with (Ready=False InvalidSpec).
    {
        "rule": "!has(self.baseURL) || (isURL(self.baseURL) && "
        "url(self.baseURL).getScheme() in ['http', 'https'])",
        "message": "baseURL must be an http or https URL",
    },
    {
        "rule": "!has(self.baseURL) || !self.baseURL.matches('"
        + REFUSED_URL_PATTERN.replace("\\", "\\\\")
        + "')",
        "message": "baseURL must not be a link-local or cloud metadata address",
    },
]
