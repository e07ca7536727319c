"""What each wire format can honour, so a parameter is never dropped on the way.

A request that sets something a provider type cannot do (a `seed` for Anthropic, a
`response_format` for Anthropic or Echo, `top_k` for api.openai.com) is not sent to a
provider of that type: the gateway skips such targets, and when no target of the model
is left the caller gets 400 `AI_UNSUPPORTED_PARAMETER` naming the parameter (its neutral
name; each surface shows its own spelling). Silently dropping it would answer a
different question than the one asked.
"""

from __future__ import annotations

import json
from typing import Final

from app.ai.types import ChatRequest
from app.core.specs.ai_provider import ProviderType

#: Anthropic's temperature range is 0..1 (docs.anthropic.com/en/api/messages).
ANTHROPIC_MAX_TEMPERATURE: Final = 1.0
#: Formats that have an embeddings endpoint (Anthropic has none; Echo fakes one).
EMBEDDING_TYPES: Final = frozenset(
    {
        ProviderType.OPENAI_COMPATIBLE,
        ProviderType.OPENAI,
        ProviderType.AZURE_OPENAI,
        ProviderType.ECHO,
    }
)


def _anthropic(request: ChatRequest) -> str | None:
    if request.seed is not None:
        return "seed"
    if request.response_format is not None:
        return "response_format"
    if request.temperature is not None and request.temperature > ANTHROPIC_MAX_TEMPERATURE:
        return "temperature"
    if request.openai_extra:
        return sorted(request.openai_extra)[0]
    for message in request.messages:
        for call in message.tool_calls:
            try:
                if not isinstance(json.loads(call.arguments or "{}"), dict):
                    return "tool_calls.arguments"
            except ValueError:
                return "tool_calls.arguments"
    return None


def _echo(request: ChatRequest) -> str | None:
    if request.tools or request.tool_choice is not None:
        return "tools"
    if request.response_format is not None:
        return "response_format"
    if any(m.images for m in request.messages):
        return "image_url"
    return None


def unsupported(kind: ProviderType, request: ChatRequest) -> str | None:
    """The first parameter of `request` a `kind` provider cannot honour (None: all fine)."""
    if kind is ProviderType.ANTHROPIC:
        return _anthropic(request)
    if kind is ProviderType.ECHO:
        return _echo(request)
    if request.top_k is not None and kind in (ProviderType.OPENAI, ProviderType.AZURE_OPENAI):
        return "top_k"
    return None


def can_embed(kind: ProviderType) -> bool:
    """True when providers of `kind` have an embeddings endpoint."""
    return kind in EMBEDDING_TYPES
