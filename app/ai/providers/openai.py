"""OpenAI chat completions (OpenAI, vLLM, Ollama, LM Studio ...) and Azure OpenAI.

Wire format: platform.openai.com/docs/api-reference/chat. Streams ask for
`stream_options.include_usage` so the last chunk carries usage and a streamed call is
charged like any other (LiteLLM#37923 recorded streams as $0); servers that ignore the
option get an estimate, marked as one.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.ai.providers.base import HttpProvider, bad_response
from app.ai.types import ChatRequest, Completion, StreamEvent, Usage

#: Azure OpenAI data-plane API version (learn.microsoft.com, "Azure OpenAI REST API
#: reference", latest GA); override with `?api-version=` in baseURL.
AZURE_API_VERSION: Final = "2024-10-21"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(ge=0)


class _Message(_Loose):
    content: str | None = None


class _Choice(_Loose):
    message: _Message
    finish_reason: str | None = None


class _ChatCompletion(_Loose):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Delta(_Loose):
    content: str | None = None


class _ChunkChoice(_Loose):
    delta: _Delta = Field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(_Loose):
    choices: list[_ChunkChoice] = Field(default_factory=list)
    usage: _Usage | None = None


class OpenAICompatibleProvider(HttpProvider):
    """`POST {baseURL}/chat/completions` with `Authorization: Bearer`."""

    max_tokens_field = "max_tokens"

    def url(self, request: ChatRequest) -> str:  # noqa: ARG002 - same URL for every model
        """`{baseURL}/chat/completions` (baseURL includes `/v1`, like the OpenAI SDKs)."""
        return f"{str(self.spec.baseURL).rstrip('/')}/chat/completions"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Bearer token."""
        return {"Authorization": f"Bearer {api_key}"}

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """Chat completion request."""
        body: dict[str, Any] = {
            "model": request.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            self.max_tokens_field: request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    def parse(self, payload: Any) -> Completion:
        """Validate a chat.completion object."""
        try:
            parsed = _ChatCompletion.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected completion shape") from None
        choice = parsed.choices[0]
        text = choice.message.content or ""
        usage = (
            Usage(parsed.usage.prompt_tokens, parsed.usage.completion_tokens)
            if parsed.usage
            else None
        )
        return Completion(text=text, usage=usage, finish_reason=choice.finish_reason)

    def parse_event(self, event: str | None, payload: Any) -> StreamEvent | None:  # noqa: ARG002
        """Validate a chat.completion.chunk."""
        try:
            chunk = _Chunk.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected chunk shape") from None
        text, finish = "", None
        if chunk.choices:
            text = chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason
        if chunk.usage is not None:
            return StreamEvent(
                text=text,
                input_tokens=chunk.usage.prompt_tokens,
                output_tokens=chunk.usage.completion_tokens,
                finish_reason=finish,
            )
        return StreamEvent(text=text, finish_reason=finish)


class OpenAIProvider(OpenAICompatibleProvider):
    """api.openai.com: `max_completion_tokens` (required by its reasoning models)."""

    max_tokens_field = "max_completion_tokens"


class AzureOpenAIProvider(OpenAICompatibleProvider):
    """`{baseURL}/openai/deployments/{model}/chat/completions?api-version=...`, `api-key`."""

    def url(self, request: ChatRequest) -> str:
        """The deployment URL; the model name is the deployment name."""
        base = str(self.spec.baseURL)
        query = ""
        if "?" in base:
            base, query = base.split("?", 1)
        if "api-version=" not in query:
            query = "&".join(q for q in (query, f"api-version={AZURE_API_VERSION}") if q)
        return f"{base.rstrip('/')}/openai/deployments/{request.model}/chat/completions?{query}"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Azure's key header."""
        return {"api-key": api_key}
