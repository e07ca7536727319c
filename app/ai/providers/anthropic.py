"""Anthropic messages API (docs.anthropic.com/en/api/messages and .../messages-streaming).

System messages go in the top-level `system` field; input tokens arrive with
`message_start`, output tokens with `message_delta`; an `error` event mid-stream (e.g.
`overloaded_error`) is a retryable server failure.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.ai.errors import FailureKind, ProviderFailure
from app.ai.providers.base import HttpProvider, bad_response
from app.ai.types import ChatRequest, Completion, StreamEvent, Usage

API_VERSION: Final = "2023-06-01"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class _Block(_Loose):
    type: str
    text: str | None = None


class _Message(_Loose):
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(_Loose):
    type: str | None = None
    text: str | None = None
    stop_reason: str | None = None


class _Event(_Loose):
    type: str
    delta: _Delta | None = None
    usage: _Usage | None = None
    message: _Message | None = None


class AnthropicProvider(HttpProvider):
    """`POST {baseURL}/v1/messages` with `x-api-key` and `anthropic-version`."""

    def url(self, request: ChatRequest) -> str:  # noqa: ARG002 - one URL for every model
        """`{baseURL}/v1/messages` (baseURL without `/v1`, like Anthropic's SDKs)."""
        base = str(self.spec.baseURL).rstrip("/")
        return f"{base}/messages" if base.endswith("/v1") else f"{base}/v1/messages"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Key and API version."""
        return {"x-api-key": api_key, "anthropic-version": API_VERSION}

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """Messages request; system prompts joined into `system`."""
        system = "\n".join(m.content for m in request.messages if m.role == "system")
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": [
                {"role": m.role, "content": m.content}
                for m in request.messages
                if m.role != "system"
            ],
        }
        if system:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = min(1.0, request.temperature)  # Anthropic allows 0..1
        if stream:
            body["stream"] = True
        return body

    def parse(self, payload: Any) -> Completion:
        """Validate a message object."""
        try:
            message = _Message.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected message shape") from None
        text = "".join(b.text or "" for b in message.content if b.type == "text")
        usage = None
        if message.usage and message.usage.input_tokens is not None:
            usage = Usage(message.usage.input_tokens, message.usage.output_tokens or 0)
        return Completion(text=text, usage=usage, finish_reason=message.stop_reason)

    def parse_event(self, event: str | None, payload: Any) -> StreamEvent | None:  # noqa: ARG002
        """Map the typed stream events; skip pings and block boundaries."""
        try:
            parsed = _Event.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected stream event") from None
        if parsed.type == "error":
            raise ProviderFailure(FailureKind.SERVER_ERROR, provider=self.name, detail="event")
        if parsed.type == "message_start" and parsed.message and parsed.message.usage:
            return StreamEvent(input_tokens=parsed.message.usage.input_tokens)
        if parsed.type == "content_block_delta" and parsed.delta is not None:
            return StreamEvent(text=parsed.delta.text or "")
        if parsed.type == "message_delta":
            usage = parsed.usage or _Usage()
            return StreamEvent(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                finish_reason=parsed.delta.stop_reason if parsed.delta else None,
            )
        if parsed.type == "message_stop":
            return StreamEvent(done=True)
        return None
