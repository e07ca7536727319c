"""Anthropic messages API (docs.anthropic.com/en/api/messages and .../messages-streaming).

System messages go in the top-level `system` field; tool calls are `tool_use` content
blocks of the assistant, tool results `tool_result` blocks of the next user turn; input
tokens arrive with `message_start`, output tokens with `message_delta`; an `error` event
mid-stream (e.g. `overloaded_error`) is a retryable server failure. Stop reasons are
mapped to OpenAI's finish reasons (app/ai/types.py).
"""

from __future__ import annotations

import json
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.ai.errors import FailureKind, ProviderFailure
from app.ai.providers.base import HttpProvider, bad_response
from app.ai.types import (
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    ChatRequest,
    Completion,
    ImagePart,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

API_VERSION: Final = "2023-06-01"
#: Anthropic stop_reason -> OpenAI finish_reason.
FINISH: Final = {
    "end_turn": FINISH_STOP,
    "stop_sequence": FINISH_STOP,
    "max_tokens": FINISH_LENGTH,
    "tool_use": FINISH_TOOL_CALLS,
    "refusal": "content_filter",
}


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)


class _Block(_Loose):
    type: str
    text: str | None = None
    id: str | None = None
    name: str | None = None
    input: Any = None


class _Message(_Loose):
    content: list[_Block]
    stop_reason: str | None = None
    usage: _Usage | None = None


class _Delta(_Loose):
    type: str | None = None
    text: str | None = None
    partial_json: str | None = None
    stop_reason: str | None = None


class _Event(_Loose):
    type: str
    index: int | None = None
    delta: _Delta | None = None
    usage: _Usage | None = None
    message: _Message | None = None
    content_block: _Block | None = None


def image_block(part: ImagePart) -> dict[str, Any]:
    """An image part as an Anthropic image block (base64 for data URLs, else by URL)."""
    if part.url.startswith("data:") and ";base64," in part.url:
        head, data = part.url[5:].split(";base64,", 1)
        return {"type": "image", "source": {"type": "base64", "media_type": head, "data": data}}
    return {"type": "image", "source": {"type": "url", "url": part.url}}


def _blocks(message: Message) -> list[dict[str, Any]]:
    if isinstance(message.content, str):
        blocks = [{"type": "text", "text": message.content}] if message.content else []
    else:
        blocks = [
            {"type": "text", "text": p.text} if isinstance(p, TextPart) else image_block(p)
            for p in message.content
        ]
    if message.role == "tool":
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.tool_call_id,
                                  "content": blocks}  # fmt: skip
        if message.is_error:
            result["is_error"] = True
        return [result]
    for call in message.tool_calls:
        blocks.append({"type": "tool_use", "id": call.id, "name": call.name,
                       "input": json.loads(call.arguments or "{}")})  # fmt: skip
    return blocks


def messages_out(request: ChatRequest) -> tuple[str, list[dict[str, Any]]]:
    """`system` text and the `messages` list (tool results become user turns; turns of
    the same role in a row are merged, as the API expects alternating turns)."""
    system = "\n".join(m.text for m in request.messages if m.role == "system")
    out: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "system":
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = _blocks(message)
        if out and out[-1]["role"] == role:
            out[-1]["content"].extend(blocks)
        else:
            out.append({"role": role, "content": blocks})
    return system, out


def tool_fields(request: ChatRequest) -> dict[str, Any]:
    """`tools` and `tool_choice` in Anthropic's shape."""
    out: dict[str, Any] = {}
    if request.tools:
        out["tools"] = [
            {"name": t.name, **({"description": t.description} if t.description else {}),
             "input_schema": dict(t.parameters) or {"type": "object", "properties": {}}}
            for t in request.tools
        ]  # fmt: skip
    choice = request.tool_choice
    mode = {"auto": "auto", "none": "none", "required": "any", "tool": "tool"}
    tool_choice: dict[str, Any] | None = None
    if choice is not None:
        tool_choice = {"type": mode[choice.mode]}
        if choice.mode == "tool":
            tool_choice["name"] = choice.name
    if request.parallel_tool_calls is False and request.tools:
        tool_choice = tool_choice or {"type": "auto"}
        if tool_choice["type"] != "none":
            tool_choice["disable_parallel_tool_use"] = True
    if tool_choice is not None:
        out["tool_choice"] = tool_choice
    return out


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
        system, messages = messages_out(request)
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            body["system"] = system
        # app/ai/capabilities.py never lets a temperature above 1 (Anthropic's range) here.
        optional = {"temperature": request.temperature, "top_p": request.top_p,
                    "top_k": request.top_k}  # fmt: skip
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.stop:
            body["stop_sequences"] = list(request.stop)
        if request.user:
            body["metadata"] = {"user_id": request.user}
        body.update(tool_fields(request))
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
        calls = tuple(
            ToolCall(b.id or f"toolu_{i}", b.name or "", json.dumps(b.input or {}))
            for i, b in enumerate(message.content)
            if b.type == "tool_use"
        )
        usage = None
        if message.usage and message.usage.input_tokens is not None:
            usage = Usage(message.usage.input_tokens, message.usage.output_tokens or 0)
        finish = FINISH.get(message.stop_reason or "", message.stop_reason)
        return Completion(text=text, usage=usage, finish_reason=finish, tool_calls=calls)

    def parse_event(
        self,
        event: str | None,  # noqa: ARG002 - the type is in the payload
        payload: Any,
        state: dict[str, Any],
    ) -> StreamEvent | None:
        """Map the typed stream events; skip pings and block boundaries.

        Tool calls are numbered in order of their `tool_use` blocks (`state["tools"]`
        maps a block index to that number), as OpenAI numbers them.
        """
        try:
            parsed = _Event.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected stream event") from None
        tools: dict[int, int] = state.setdefault("tools", {})
        kind = parsed.type
        if kind == "error":
            raise ProviderFailure(FailureKind.SERVER_ERROR, provider=self.name, detail="event")
        if kind == "message_start" and parsed.message and parsed.message.usage:
            return StreamEvent(input_tokens=parsed.message.usage.input_tokens)
        block = parsed.content_block
        if kind == "content_block_start" and block is not None and block.type == "tool_use":
            tools[parsed.index or 0] = number = len(tools)
            return StreamEvent(tool_calls=(ToolCallDelta(number, block.id, block.name or ""),))
        if kind == "content_block_delta" and parsed.delta is not None:
            if parsed.delta.type == "input_json_delta":
                number = tools.get(parsed.index or 0, 0)
                return StreamEvent(
                    tool_calls=(ToolCallDelta(number, arguments=parsed.delta.partial_json or ""),)
                )
            return StreamEvent(text=parsed.delta.text or "")
        if kind == "message_delta":
            usage = parsed.usage or _Usage()
            stop = parsed.delta.stop_reason if parsed.delta else None
            return StreamEvent(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                finish_reason=FINISH.get(stop or "", stop),
            )
        if kind == "message_stop":
            return StreamEvent(done=True)
        return None
