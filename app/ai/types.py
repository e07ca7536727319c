"""Plain values the gateway passes around: a chat request, usage, a completion, stream events."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

Role = Literal["system", "user", "assistant"]
ROLES: Final = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Message:
    """One chat message."""

    role: Role
    content: str


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """What the gateway asks of a provider (the provider maps it to its wire format)."""

    model: str
    messages: tuple[Message, ...]
    max_tokens: int
    temperature: float | None = None

    @property
    def prompt_text(self) -> str:
        """Every message's content joined, for estimates and history."""
        return "\n".join(m.content for m in self.messages)


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
