"""OpenAI chat completions (OpenAI, vLLM, Ollama, LM Studio ...) and Azure OpenAI.

Wire format: platform.openai.com/docs/api-reference/chat. Streams ask for
`stream_options.include_usage` so the last chunk carries usage and a streamed call is
charged like any other (LiteLLM#37923 recorded streams as $0); servers that ignore the
option get an estimate, marked as one. Tools, `tool_choice`, `response_format`, `stop`,
`seed`, `top_p` and `user` are sent as OpenAI names them; embeddings go to `/embeddings`.
"""

from __future__ import annotations

from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from app.ai.providers.base import HttpProvider, bad_response
from app.ai.types import (
    ChatRequest,
    Completion,
    Embeddings,
    ImagePart,
    Message,
    StreamEvent,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

#: Azure OpenAI data-plane API version (learn.microsoft.com, "Azure OpenAI REST API
#: reference", latest GA); override with `?api-version=` in baseURL.
AZURE_API_VERSION: Final = "2024-10-21"


class _Loose(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Usage(_Loose):
    prompt_tokens: int = Field(ge=0)
    completion_tokens: int = Field(default=0, ge=0)


class _Function(_Loose):
    name: str | None = None
    arguments: str | None = None


class _ToolCall(_Loose):
    index: int | None = None
    id: str | None = None
    function: _Function = Field(default_factory=_Function)


class _Message(_Loose):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(_Loose):
    message: _Message
    finish_reason: str | None = None


class _ChatCompletion(_Loose):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


class _Delta(_Loose):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _ChunkChoice(_Loose):
    delta: _Delta = Field(default_factory=_Delta)
    finish_reason: str | None = None


class _Chunk(_Loose):
    choices: list[_ChunkChoice] = Field(default_factory=list)
    usage: _Usage | None = None


class _Vector(_Loose):
    index: int = Field(ge=0)
    embedding: list[float]


class _Embeddings(_Loose):
    data: list[_Vector]
    usage: _Usage | None = None


def content_out(message: Message) -> str | list[dict[str, Any]]:
    """A message's content as OpenAI parts (a plain string when it is one)."""
    if isinstance(message.content, str):
        return message.content
    parts: list[dict[str, Any]] = []
    for part in message.content:
        if isinstance(part, TextPart):
            parts.append({"type": "text", "text": part.text})
        elif isinstance(part, ImagePart):
            image: dict[str, Any] = {"url": part.url}
            if part.detail:
                image["detail"] = part.detail
            parts.append({"type": "image_url", "image_url": image})
    return parts


def message_out(message: Message) -> dict[str, Any]:
    """One neutral message as a chat completions message."""
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id,
                "content": content_out(message)}  # fmt: skip
    out: dict[str, Any] = {"role": message.role, "content": content_out(message)}
    if message.tool_calls:
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
        if out["content"] == "":
            out["content"] = None
    return out


def tool_fields(request: ChatRequest) -> dict[str, Any]:
    """`tools`, `tool_choice`, `parallel_tool_calls` and `response_format`, as set."""
    out: dict[str, Any] = {}
    if request.tools:
        tools = []
        for tool in request.tools:
            function: dict[str, Any] = {"name": tool.name, "parameters": dict(tool.parameters)}
            if tool.description is not None:
                function["description"] = tool.description
            if tool.strict is not None:
                function["strict"] = tool.strict
            tools.append({"type": "function", "function": function})
        out["tools"] = tools
    choice = request.tool_choice
    if choice is not None:
        out["tool_choice"] = (
            {"type": "function", "function": {"name": choice.name}}
            if choice.mode == "tool"
            else choice.mode
        )
    if request.parallel_tool_calls is not None:
        out["parallel_tool_calls"] = request.parallel_tool_calls
    fmt = request.response_format
    if fmt is not None:
        if fmt.type == "json_object":
            out["response_format"] = {"type": "json_object"}
        else:
            schema: dict[str, Any] = {
                "name": fmt.name or "response",
                "schema": dict(fmt.schema or {}),
            }
            if fmt.strict is not None:
                schema["strict"] = fmt.strict
            if fmt.description is not None:
                schema["description"] = fmt.description
            out["response_format"] = {"type": "json_schema", "json_schema": schema}
    return out


def _tool_calls(calls: list[_ToolCall] | None) -> tuple[ToolCall, ...]:
    return tuple(
        ToolCall(c.id or f"call_{i}", c.function.name or "", c.function.arguments or "")
        for i, c in enumerate(calls or [])
    )


class OpenAICompatibleProvider(HttpProvider):
    """`POST {baseURL}/chat/completions` with `Authorization: Bearer`."""

    max_tokens_field = "max_tokens"
    #: Whether the server takes `top_k` (vLLM and Ollama do; api.openai.com does not).
    send_top_k = True

    def base(self) -> str:
        """baseURL without a trailing slash (it includes `/v1`, like the OpenAI SDKs)."""
        return str(self.spec.baseURL).rstrip("/")

    def url(self, request: ChatRequest) -> str:  # noqa: ARG002 - same URL for every model
        """`{baseURL}/chat/completions`."""
        return f"{self.base()}/chat/completions"

    def embeddings_url(self, model: str) -> str:  # noqa: ARG002 - same URL for every model
        """`{baseURL}/embeddings`."""
        return f"{self.base()}/embeddings"

    def model_field(self, model: str) -> dict[str, Any]:
        """The `model` of the body (Azure names the deployment in the URL instead)."""
        return {"model": model}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Bearer token."""
        return {"Authorization": f"Bearer {api_key}"}

    def body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        """Chat completion request."""
        body: dict[str, Any] = {
            **self.model_field(request.model),
            "messages": [message_out(m) for m in request.messages],
            self.max_tokens_field: request.max_tokens,
        }
        optional = {"temperature": request.temperature, "top_p": request.top_p,
                    "seed": request.seed, "user": request.user}  # fmt: skip
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.top_k is not None and self.send_top_k:
            body["top_k"] = request.top_k
        if request.stop:
            body["stop"] = list(request.stop)
        body.update(tool_fields(request))
        body.update(request.openai_extra)
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
        usage = (
            Usage(parsed.usage.prompt_tokens, parsed.usage.completion_tokens)
            if parsed.usage
            else None
        )
        return Completion(
            text=choice.message.content or "",
            usage=usage,
            finish_reason=choice.finish_reason,
            tool_calls=_tool_calls(choice.message.tool_calls),
        )

    def parse_event(
        self,
        event: str | None,  # noqa: ARG002 - chunks are unnamed
        payload: Any,
        state: dict[str, Any],  # noqa: ARG002 - chunks carry their own indexes
    ) -> StreamEvent | None:
        """Validate a chat.completion.chunk."""
        try:
            chunk = _Chunk.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected chunk shape") from None
        text, finish = "", None
        calls: tuple[ToolCallDelta, ...] = ()
        if chunk.choices:
            delta = chunk.choices[0].delta
            text, finish = delta.content or "", chunk.choices[0].finish_reason
            calls = tuple(
                ToolCallDelta(
                    c.index if c.index is not None else i,
                    c.id,
                    c.function.name,
                    c.function.arguments or "",
                )
                for i, c in enumerate(delta.tool_calls or [])
            )
        usage = chunk.usage
        return StreamEvent(
            text=text,
            input_tokens=usage.prompt_tokens if usage else None,
            output_tokens=usage.completion_tokens if usage else None,
            finish_reason=finish,
            tool_calls=calls,
        )

    def embed(
        self, model: str, inputs: tuple[str, ...], *, dimensions: int | None, timeout: float
    ) -> Embeddings:
        """`POST /embeddings` with every input in one call."""
        body: dict[str, Any] = {**self.model_field(model), "input": list(inputs),
                                "encoding_format": "float"}  # fmt: skip
        if dimensions is not None:
            body["dimensions"] = dimensions
        payload = self.post_json(self.embeddings_url(model), body, timeout=timeout)
        try:
            parsed = _Embeddings.model_validate(payload)
        except ValidationError:
            raise bad_response(self.name, "unexpected embeddings shape") from None
        vectors = sorted(parsed.data, key=lambda v: v.index)
        if len(vectors) != len(inputs):
            raise bad_response(self.name, "embeddings count differs from inputs")
        usage = Usage(parsed.usage.prompt_tokens, 0) if parsed.usage else None
        return Embeddings(tuple(tuple(v.embedding) for v in vectors), usage)


class OpenAIProvider(OpenAICompatibleProvider):
    """api.openai.com: `max_completion_tokens` (required by its reasoning models)."""

    max_tokens_field = "max_completion_tokens"
    send_top_k = False


class AzureOpenAIProvider(OpenAICompatibleProvider):
    """`{baseURL}/openai/deployments/{model}/chat/completions?api-version=...`, `api-key`.

    The model name is the deployment name; it travels in the URL, not the body.
    """

    send_top_k = False

    def _deployment_url(self, deployment: str, operation: str) -> str:
        base = str(self.spec.baseURL)
        query = ""
        if "?" in base:
            base, query = base.split("?", 1)
        if "api-version=" not in query:
            query = "&".join(q for q in (query, f"api-version={AZURE_API_VERSION}") if q)
        return f"{base.rstrip('/')}/openai/deployments/{deployment}/{operation}?{query}"

    def url(self, request: ChatRequest) -> str:
        """The deployment's chat completions URL."""
        return self._deployment_url(request.model, "chat/completions")

    def embeddings_url(self, model: str) -> str:
        """The deployment's embeddings URL."""
        return self._deployment_url(model, "embeddings")

    def model_field(self, model: str) -> dict[str, Any]:  # noqa: ARG002 - in the URL
        """Nothing: Azure takes the deployment from the URL."""
        return {}

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """Azure's key header."""
        return {"api-key": api_key}
