"""Provider implementations by `AIProvider.spec.type`."""

from __future__ import annotations

from collections.abc import Collection

import httpx

from app.ai.providers.anthropic import AnthropicProvider
from app.ai.providers.base import HttpProvider, Provider, ProviderStream
from app.ai.providers.echo import EchoProvider
from app.ai.providers.openai import AzureOpenAIProvider, OpenAICompatibleProvider, OpenAIProvider
from app.core.specs.ai_provider import AIProviderSpec, ProviderType

_HTTP: dict[ProviderType, type[HttpProvider]] = {
    ProviderType.OPENAI_COMPATIBLE: OpenAICompatibleProvider,
    ProviderType.OPENAI: OpenAIProvider,
    ProviderType.AZURE_OPENAI: AzureOpenAIProvider,
    ProviderType.ANTHROPIC: AnthropicProvider,
}

__all__ = ["Provider", "ProviderStream", "build_provider"]


def build_provider(
    *,
    name: str,
    spec: AIProviderSpec,
    api_key: str | None,
    transport: httpx.BaseTransport | None,
    connect_timeout: float,
    allowed_http_hosts: Collection[str] = (),
) -> Provider:
    """The provider object for `spec` (HTTP ones need `transport`)."""
    if spec.type is ProviderType.ECHO:
        return EchoProvider(name=name, spec=spec)
    assert transport is not None, "HTTP providers need a transport"
    cls = _HTTP[spec.type]
    return cls(
        name=name,
        spec=spec,
        api_key=api_key,
        transport=transport,
        connect_timeout=connect_timeout,
        allowed_http_hosts=allowed_http_hosts,
    )
