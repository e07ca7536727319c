"""Anthropic's messages wire format, as a surface we serve.

Request: docs.anthropic.com/en/api/messages. `system`, text / image / `tool_use` /
`tool_result` blocks, tools and `tool_choice`, `stop_sequences`, `temperature`, `top_p`,
`top_k`, `metadata.user_id`. Unknown fields (`thinking`, `cache_control`, ...) are
refused with 400, never dropped. Streams follow docs.anthropic.com/en/api/messages-
streaming: `message_start`, then per content block `content_block_start`,
`content_block_delta`..., `content_block_stop`, then `message_delta` (stop reason,
usage) and `message_stop`.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.ai.compat.errors import anthropic_error
from app.ai.errors import ProviderFailure
from app.ai.models import ModelName
from app.ai.tokens import estimate_input
from app.ai.types import (
    FINISH_LENGTH,
    FINISH_STOP,
    FINISH_TOOL_CALLS,
    ChatRequest,
    Completion,
    ImagePart,
    Message,
    Part,
    StreamEvent,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from app.core.errors import ApiError

MAX_TEXT: Final = 200_000
#: OpenAI finish reason -> Anthropic stop reason.
STOP_REASON: Final = {
    FINISH_STOP: "end_turn",
    FINISH_LENGTH: "max_tokens",
    FINISH_TOOL_CALLS: "tool_use",
    "content_filter": "refusal",
}
ToolName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _nulls_are_unset(cls, data: Any) -> Any:
        # A block echoed back from a response carries the response's null fields
        # (`caller: null`, ...): null means "not set", not an unknown feature in use.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class ImageSource(_Strict):
    type: Literal["base64", "url"]
    media_type: str | None = Field(default=None, max_length=100)
    data: str | None = None
    url: str | None = Field(default=None, max_length=20_000)


class Block(_Strict):
    """A content block: `text`, `image`, `tool_use` or `tool_result`."""

    type: Literal["text", "image", "tool_use", "tool_result"]
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    source: ImageSource | None = None
    id: str | None = Field(default=None, max_length=256)
    name: ToolName | None = None
    input: dict[str, Any] | None = None
    tool_use_id: str | None = Field(default=None, max_length=256)
    content: str | list[Block] | None = None
    is_error: bool | None = None


class MessageIn(_Strict):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class SystemBlock(_Strict):
    type: Literal["text"]
    text: str = Field(max_length=MAX_TEXT)


class ToolIn(_Strict):
    name: ToolName
    description: str | None = Field(default=None, max_length=10_000)
    input_schema: dict[str, Any]


class ToolChoiceIn(_Strict):
    type: Literal["auto", "any", "tool", "none"]
    name: ToolName | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(_Strict):
    user_id: str | None = Field(default=None, max_length=256)


class MessagesBody(_Strict):
    """`POST /anthropic/v1/messages`."""

    model: ModelName
    max_tokens: int = Field(ge=1, le=200_000)
    messages: list[MessageIn] = Field(min_length=1, max_length=1000)
    system: str | list[SystemBlock] | None = None
    stop_sequences: list[str] | None = Field(default=None, max_length=16)
    stream: bool = False
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = Field(default=None, ge=0)
    tools: list[ToolIn] | None = Field(default=None, max_length=128)
    tool_choice: ToolChoiceIn | None = None
    metadata: Metadata | None = None


# --- request: Anthropic -> neutral -----------------------------------------------------


def _image(block: Block) -> ImagePart:
    source = block.source
    if source is None:
        raise ValueError("image block without source")
    if source.type == "base64":
        return ImagePart(f"data:{source.media_type};base64,{source.data or ''}")
    return ImagePart(source.url or "")


def _content(blocks: list[Block]) -> str | tuple[Part, ...]:
    parts: list[Part] = []
    for block in blocks:
        if block.type == "text":
            parts.append(TextPart(block.text or ""))
        elif block.type == "image":
            parts.append(_image(block))
    if all(isinstance(p, TextPart) for p in parts):
        return "".join(p.text for p in parts if isinstance(p, TextPart))
    return tuple(parts)


def _messages(message: MessageIn) -> list[Message]:
    if isinstance(message.content, str):
        return [Message(message.role, message.content)]
    blocks = message.content
    if message.role == "assistant":
        calls = tuple(
            ToolCall(b.id or "", b.name or "", json.dumps(b.input or {}))
            for b in blocks
            if b.type == "tool_use"
        )
        plain = [b for b in blocks if b.type in ("text", "image")]
        return [Message("assistant", _content(plain), tool_calls=calls)]
    out: list[Message] = []
    for block in blocks:
        if block.type == "tool_result":
            inner = block.content
            content = inner if isinstance(inner, str) else _content(inner or [])
            out.append(
                Message("tool", content, tool_call_id=block.tool_use_id,
                        is_error=bool(block.is_error))
            )  # fmt: skip
    plain = [b for b in blocks if b.type in ("text", "image")]
    if plain or not out:
        out.append(Message("user", _content(plain)))
    return out


def chat_request(body: MessagesBody) -> ChatRequest:
    """The neutral request of a validated body."""
    messages: list[Message] = []
    if body.system:
        system = body.system if isinstance(body.system, str) else "\n".join(
            b.text for b in body.system
        )  # fmt: skip
        messages.append(Message("system", system))
    for message in body.messages:
        messages.extend(_messages(message))
    tools = tuple(Tool(t.name, t.description, t.input_schema) for t in body.tools or ())
    choice = body.tool_choice
    tool_choice = None
    parallel = None
    if choice is not None:
        mode = {"auto": "auto", "any": "required", "tool": "tool", "none": "none"}[choice.type]
        tool_choice = ToolChoice(mode, choice.name)  # type: ignore[arg-type]
        if choice.disable_parallel_tool_use:
            parallel = False
    return ChatRequest(
        model=body.model,
        messages=tuple(messages),
        max_tokens=body.max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        top_k=body.top_k,
        stop=tuple(body.stop_sequences or ()),
        user=body.metadata.user_id if body.metadata else None,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=parallel,
    )


# --- answer: neutral -> Anthropic ------------------------------------------------------


def message_id(generation_id: Any) -> str:
    """`msg_<history record id>`."""
    return f"msg_{generation_id}"


def tool_input(arguments: str) -> dict[str, Any]:
    """A tool call's JSON arguments as Anthropic's `input` object."""
    try:
        value = json.loads(arguments or "{}")
    except ValueError:
        return {"arguments": arguments}
    return value if isinstance(value, dict) else {"arguments": value}


def message_json(*, generation_id: Any, model: str, completion: Completion) -> dict[str, Any]:
    """A `message` object."""
    content: list[dict[str, Any]] = []
    if completion.text or not completion.tool_calls:
        content.append({"type": "text", "text": completion.text})
    for call in completion.tool_calls:
        content.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": tool_input(call.arguments),
            }
        )
    usage = completion.usage
    assert usage is not None
    finish = completion.finish_reason or FINISH_STOP
    return {
        "id": message_id(generation_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": STOP_REASON.get(finish, "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens},
    }


def _event(name: str, payload: dict[str, Any]) -> bytes:
    body = json.dumps({"type": name, **payload}, separators=(",", ":"))
    return f"event: {name}\ndata: {body}\n\n".encode()


class EventFormat:
    """Anthropic's stream events, in Anthropic's order (one block open at a time)."""

    def __init__(
        self, *, generation_id: Any, model: str, request: ChatRequest, first: StreamEvent
    ) -> None:
        self.id = message_id(generation_id)
        self.model = model
        # Input tokens are known at the start only when the provider sent them first
        # (Anthropic does); otherwise an estimate, corrected by `message_delta`.
        self.input_tokens = (
            first.input_tokens if first.input_tokens is not None else estimate_input(request)
        )
        self.index = -1
        self.open: Literal["text", "tool"] | None = None
        self.tool: int | None = None

    def start(self) -> bytes:
        """`message_start` and a `ping`."""
        message: dict[str, Any] = {
            "id": self.id, "type": "message", "role": "assistant", "model": self.model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }  # fmt: skip
        return _event("message_start", {"message": message}) + _event("ping", {})

    def _close(self) -> bytes:
        if self.open is None:
            return b""
        self.open = None
        return _event("content_block_stop", {"index": self.index})

    def _open(self, block: dict[str, Any], kind: Literal["text", "tool"]) -> bytes:
        out = self._close()
        self.index += 1
        self.open = kind
        return out + _event("content_block_start", {"index": self.index, "content_block": block})

    def event(self, event: StreamEvent) -> bytes:
        """Text deltas and tool-use blocks, opening and closing blocks as needed."""
        out = b""
        if event.text:
            if self.open != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            delta = {"type": "text_delta", "text": event.text}
            out += _event("content_block_delta", {"index": self.index, "delta": delta})
        for call in event.tool_calls:
            if call.id is not None or self.open != "tool" or call.index != self.tool:
                block = {"type": "tool_use", "id": call.id or f"toolu_{call.index}",
                         "name": call.name or "", "input": {}}  # fmt: skip
                out += self._open(block, "tool")
                self.tool = call.index
            if call.arguments:
                delta = {"type": "input_json_delta", "partial_json": call.arguments}
                out += _event("content_block_delta", {"index": self.index, "delta": delta})
        return out

    def done(self, usage: Usage, cost: Decimal, finish_reason: str | None) -> bytes:  # noqa: ARG002
        """Close the last block, `message_delta` (stop reason, usage), `message_stop`."""
        out = self._close()
        if self.index < 0:  # an empty answer still has one (empty) text block
            out += self._open({"type": "text", "text": ""}, "text") + self._close()
        delta = {"stop_reason": STOP_REASON.get(finish_reason or FINISH_STOP, "end_turn"),
                 "stop_sequence": None}  # fmt: skip
        usage_out = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens}
        out += _event("message_delta", {"delta": delta, "usage": usage_out})
        return out + _event("message_stop", {})

    def error(self, error: ApiError, failure: ProviderFailure) -> bytes:  # noqa: ARG002
        """An `error` event in Anthropic's shape."""
        shaped = anthropic_error(error.status, error.message, error.code.value)
        return _event("error", {"error": shaped["error"]})
