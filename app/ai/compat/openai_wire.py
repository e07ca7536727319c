"""OpenAI's chat completions and embeddings wire format, as a surface we serve.

Request: platform.openai.com/docs/api-reference/chat/create. Every field we accept is
honoured or refused (400 naming it): unknown fields are refused as OpenAI does
("Unrecognized request argument"), `n` other than 1 and content parts other than text
and images are refused, and a parameter the routed provider cannot honour is refused by
routing (app/ai/capabilities.py). Nothing is dropped on the way.
"""

from __future__ import annotations

import base64 as b64
import struct
import time
from typing import Annotated, Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.ai.models import ModelName
from app.ai.types import (
    FINISH_STOP,
    ChatRequest,
    Completion,
    ImagePart,
    Message,
    Part,
    ResponseFormat,
    TextPart,
    Tool,
    ToolCall,
    ToolChoice,
    Usage,
)
from app.core.errors import ApiError, ErrorCode

MAX_TEXT: Final = 200_000
#: OpenAI-only sampling knobs passed through unchanged (refused by other wire formats).
PASS_THROUGH: Final = (
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "logprobs",
    "top_logprobs",
)
FunctionName = Annotated[str, StringConstraints(pattern=r"^[a-zA-Z0-9_-]{1,64}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ImageURL(_Strict):
    url: str = Field(min_length=1, max_length=20_000_000)
    detail: Literal["auto", "low", "high"] | None = None


class ContentPart(_Strict):
    """`text` or `image_url`; audio and file parts are refused."""

    type: Literal["text", "image_url"]
    text: str | None = Field(default=None, max_length=MAX_TEXT)
    image_url: ImageURL | None = None

    @model_validator(mode="after")
    def _matching(self) -> ContentPart:
        if self.type == "text" and self.text is None:
            raise ValueError("a text part needs `text`")
        if self.type == "image_url" and self.image_url is None:
            raise ValueError("an image_url part needs `image_url`")
        return self


class FunctionCall(_Strict):
    name: FunctionName
    arguments: str = Field(max_length=MAX_TEXT)


class ToolCallIn(_Strict):
    id: str = Field(min_length=1, max_length=256)
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(_Strict):
    """One message; `developer` is OpenAI's newer name for `system`."""

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=256)
    refusal: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ChatMessage:
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a tool message needs `tool_call_id`")
        if self.role != "assistant" and self.tool_calls:
            raise ValueError("only assistant messages carry `tool_calls`")
        if self.role != "assistant" and self.content is None:
            raise ValueError("`content` is required")
        return self


class FunctionDef(_Strict):
    name: FunctionName
    description: str | None = Field(default=None, max_length=10_000)
    parameters: dict[str, Any] = Field(default_factory=dict)
    strict: bool | None = None


class ToolDef(_Strict):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Strict):
    name: FunctionName


class NamedTool(_Strict):
    type: Literal["function"]
    function: NamedFunction


class JsonSchema(_Strict):
    name: str = Field(pattern=r"^[a-zA-Z0-9_-]{1,64}$")
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None
    description: str | None = None


class ResponseFormatIn(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchema | None = None

    @model_validator(mode="after")
    def _schema(self) -> ResponseFormatIn:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("type json_schema needs `json_schema`")
        return self


class StreamOptions(_Strict):
    include_usage: bool = False


class ChatCompletionBody(_Strict):
    """`POST /openai/v1/chat/completions`."""

    model: ModelName
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    max_tokens: int | None = Field(default=None, ge=1, le=200_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=200_000)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    user: str | None = Field(default=None, max_length=256)
    tools: list[ToolDef] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedTool | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormatIn | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = Field(default=None, ge=1, le=1, description="Only 1 is supported")
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, int] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _checks(self) -> ChatCompletionBody:
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stops) > 4:
            raise ValueError("`stop` takes at most 4 sequences")
        if self.stream_options is not None and not self.stream:
            raise ValueError("`stream_options` is only allowed with `stream: true`")
        if self.tool_choice is not None and self.tool_choice != "none" and not self.tools:
            raise ValueError("`tool_choice` needs `tools`")
        return self


class EmbeddingsBody(_Strict):
    """`POST /openai/v1/embeddings` (text inputs; token-array inputs are refused)."""

    model: ModelName
    input: str | list[str] = Field(max_length=2048)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    user: str | None = Field(default=None, max_length=256)


# --- request: OpenAI -> neutral --------------------------------------------------------


def _parts(content: str | list[ContentPart] | None) -> str | tuple[Part, ...]:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    out: list[Part] = []
    for part in content:
        if part.type == "text":
            out.append(TextPart(part.text or ""))
        else:
            assert part.image_url is not None
            out.append(ImagePart(part.image_url.url, part.image_url.detail))
    if all(isinstance(p, TextPart) for p in out):
        return "".join(p.text for p in out if isinstance(p, TextPart))
    return tuple(out)


def _message(message: ChatMessage, index: int) -> Message:
    content = _parts(message.content)
    if message.role in ("system", "developer", "tool") and not isinstance(content, str):
        raise unsupported(f"messages[{index}].content", "image parts in this role")
    if message.role in ("system", "developer"):
        return Message("system", content)
    if message.role == "tool":
        return Message("tool", content, tool_call_id=message.tool_call_id)
    if message.role == "assistant":
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in message.tool_calls or ()
        )
        return Message("assistant", content, tool_calls=calls)
    return Message("user", content)


def unsupported(param: str, what: str) -> ApiError:
    """400 `AI_UNSUPPORTED_PARAMETER` for something this surface does not translate."""
    return ApiError(
        f"{param!r} is not supported: {what}.",
        code=ErrorCode.AI_UNSUPPORTED_PARAMETER,
        details={"param": param},
    )


def chat_request(body: ChatCompletionBody, *, default_max_tokens: int) -> ChatRequest:
    """The neutral request of a validated body."""
    tools = tuple(
        Tool(t.function.name, t.function.description, t.function.parameters, t.function.strict)
        for t in body.tools or ()
    )
    choice = body.tool_choice
    tool_choice = (
        ToolChoice(choice) if isinstance(choice, str)
        else ToolChoice("tool", choice.function.name) if choice is not None
        else None
    )  # fmt: skip
    fmt = body.response_format
    response_format = None
    if fmt is not None and fmt.type == "json_object":
        response_format = ResponseFormat("json_object")
    elif fmt is not None and fmt.type == "json_schema":
        schema = fmt.json_schema
        assert schema is not None
        response_format = ResponseFormat(
            "json_schema", schema.name, schema.schema_, schema.strict, schema.description
        )
    stops = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
    extra = {k: getattr(body, k) for k in PASS_THROUGH if getattr(body, k) is not None}
    return ChatRequest(
        model=body.model,
        messages=tuple(_message(m, i) for i, m in enumerate(body.messages)),
        max_tokens=body.max_completion_tokens or body.max_tokens or default_max_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=stops,
        seed=body.seed,
        user=body.user,
        tools=tools,
        tool_choice=tool_choice,
        parallel_tool_calls=body.parallel_tool_calls,
        response_format=response_format,
        openai_extra=extra,
    )


# --- answer: neutral -> OpenAI ---------------------------------------------------------


def completion_id(generation_id: Any) -> str:
    """`chatcmpl-<history record id>`: the id finds the record in `GET /v1/ai/history`."""
    return f"chatcmpl-{generation_id}"


def usage_json(usage: Usage) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total,
    }


def _tool_calls_json(calls: tuple[ToolCall, ...]) -> list[dict[str, Any]]:
    return [
        {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
        for c in calls
    ]


def completion_json(
    *, generation_id: Any, model: str, completion: Completion, created: int | None = None
) -> dict[str, Any]:
    """A `chat.completion` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": completion.text if completion.text or not completion.tool_calls else None,
        "refusal": None,
    }
    if completion.tool_calls:
        message["tool_calls"] = _tool_calls_json(completion.tool_calls)
    usage = completion.usage
    assert usage is not None
    return {
        "id": completion_id(generation_id),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": completion.finish_reason or FINISH_STOP,
                "logprobs": None,
            }
        ],
        "usage": usage_json(usage),
        "system_fingerprint": None,
    }


def embeddings_json(
    *, model: str, vectors: tuple[tuple[float, ...], ...], usage: Usage, base64: bool
) -> dict[str, Any]:
    """A `list` of `embedding` objects."""
    data = []
    for index, vector in enumerate(vectors):
        value: Any = list(vector)
        if base64:
            value = b64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    return {
        "object": "list",
        "data": data,
        "model": model,
        "usage": {"prompt_tokens": usage.input_tokens, "total_tokens": usage.input_tokens},
    }
