"""Plain values the gateway passes around: a chat request, usage, a completion, stream events.

These are the neutral form every surface translates to and every provider translates
from: `/v1/ai/generate`, the OpenAI- and Anthropic-compatible surfaces (app/ai/compat/)
and each wire format (app/ai/providers/). Vocabulary follows OpenAI's chat completions
where the two big formats differ (roles `tool`, finish reasons `stop` / `length` /
`tool_calls`): Anthropic's are mapped in its provider and its surface.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: Final = ("system", "user", "assistant")
#: Finish reasons, OpenAI's names (platform.openai.com/docs/api-reference/chat/object).
FINISH_STOP: Final = "stop"
FINISH_LENGTH: Final = "length"
FINISH_TOOL_CALLS: Final = "tool_calls"


@dataclass(frozen=True, slots=True)
class TextPart:
    """Text content of a message."""

    text: str


@dataclass(frozen=True, slots=True)
class ImagePart:
    """An image: an https URL or a `data:<media type>;base64,...` URL (RFC 2397)."""

    url: str
    detail: str | None = None


Part = TextPart | ImagePart


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A function call the model asked for; `arguments` is JSON text, as produced."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message; `content` is text or parts (text and images)."""

    role: Role
    content: str | tuple[Part, ...] = ""
    tool_calls: tuple[ToolCall, ...] = ()
    #: For `role == "tool"`: the call this message answers.
    tool_call_id: str | None = None
    #: For `role == "tool"`: marks a failed tool run (Anthropic `is_error`).
    is_error: bool = False

    @property
    def text(self) -> str:
        """The text of the message (text parts joined; tool call arguments included)."""
        if isinstance(self.content, str):
            body = self.content
        else:
            body = "".join(p.text for p in self.content if isinstance(p, TextPart))
        if self.tool_calls:
            body += "".join(f"{c.name}({c.arguments})" for c in self.tool_calls)
        return body

    @property
    def images(self) -> tuple[ImagePart, ...]:
        """The image parts."""
        if isinstance(self.content, str):
            return ()
        return tuple(p for p in self.content if isinstance(p, ImagePart))


@dataclass(frozen=True, slots=True)
class Tool:
    """A function the model may call; `parameters` is a JSON Schema object."""

    name: str
    description: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)
    strict: bool | None = None


@dataclass(frozen=True, slots=True)
class ToolChoice:
    """`auto`, `none`, `required` (some tool), or `tool` (the one named)."""

    mode: Literal["auto", "none", "required", "tool"]
    name: str | None = None


@dataclass(frozen=True, slots=True)
class ResponseFormat:
    """`json_object`, or `json_schema` with its schema (OpenAI structured outputs)."""

    type: Literal["json_object", "json_schema"]
    name: str | None = None
    schema: Mapping[str, Any] | None = None
    strict: bool | None = None
    description: str | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the gateway asks of a provider (the provider maps it to its wire format).

    Optional parameters are None / empty when the caller did not set them; a provider
    that cannot honour a set one is never called with it (app/ai/capabilities.py).
    """

    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    user: str | None = None
    tools: tuple[Tool, ...] = ()
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    #: Anthropic's `top_k` (OpenAI-compatible servers such as vLLM take it too).
    top_k: int | None = None
    #: OpenAI-only sampling knobs, passed as they came (`frequency_penalty`, ...).
    openai_extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def prompt_text(self) -> str:
        """Every message's content joined, for estimates and history."""
        return "\n".join(m.text for m in self.messages)


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens of one call; `estimated` when the provider did not report them."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False

    @property
    def total(self) -> int:
        """Input plus output tokens."""
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole (non-streamed) answer; `usage` is None when the provider reported none."""

    text: str
    usage: Usage | None
    finish_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()

    @property
    def recorded(self) -> str:
        """What history keeps of the answer: the text, then each tool call."""
        return self.text + "".join(f"{c.name}({c.arguments})" for c in self.tool_calls)


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call: `index` names the call, the first piece has its
    `id` and `name`, later ones add `arguments` text."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass(frozen=True, slots=True)
class StreamEvent:
    """One parsed event of a provider stream.

    `text` is a content delta (may be empty: role-only or usage-only events); token counts
    are set on the events that report them (OpenAI's last chunk, Anthropic's
    `message_start` / `message_delta`); `done` marks the provider's end of stream.
    """

    text: str = ""
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None
    done: bool = False
    tool_calls: tuple[ToolCallDelta, ...] = ()


@dataclass(frozen=True, slots=True)
class Embeddings:
    """Vectors of an embeddings call, in input order."""

    vectors: tuple[tuple[float, ...], ...]
    usage: Usage | None
