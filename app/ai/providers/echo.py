"""`Echo`: a provider that answers locally with the prompt, for development and demos.

Its tokens are words (so its usage is exact by its own definition) and its models cost
what the AIProvider says they cost (normally nothing).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from app.ai.types import ChatRequest, Completion, Embeddings, StreamEvent, Usage
from app.core.specs.ai_provider import AIProviderSpec

#: Length of Echo's embeddings when the caller names none.
DIMENSIONS = 8


def _reply(request: ChatRequest) -> str:
    last = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
    words = ["echo:", *last.split()][: max(1, request.max_tokens)]
    text = " ".join(words)
    for stop in request.stop:  # the text before the first stop sequence, like providers
        if stop and stop in text:
            text = text[: text.index(stop)]
    return text


def _vector(text: str, dimensions: int) -> tuple[float, ...]:
    """A deterministic unit-free vector of `text` (its SHA-256, stretched)."""
    out: list[float] = []
    counter = 0
    while len(out) < dimensions:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        out.extend(b / 255.0 for b in digest)
        counter += 1
    return tuple(out[:dimensions])


def _words(text: str) -> int:
    return len(text.split())


class _EchoStream:
    def __init__(self, request: ChatRequest) -> None:
        self.request = request
        self.closed = False

    def __iter__(self) -> Iterator[StreamEvent]:
        text = _reply(self.request)
        for i, word in enumerate(text.split(" ")):
            if self.closed:
                return
            yield StreamEvent(text=word if i == 0 else " " + word)
        usage = Usage(_words(self.request.prompt_text), _words(text))
        yield StreamEvent(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            finish_reason="stop",
            done=True,
        )

    def close(self) -> None:
        self.closed = True


class EchoProvider:
    """Answers `echo: <last user message>`, truncated to `max_tokens` words."""

    def __init__(self, *, name: str, spec: AIProviderSpec) -> None:
        self.name = name
        self.spec = spec

    def complete(self, request: ChatRequest, *, timeout: float) -> Completion:  # noqa: ARG002
        """Answer at once."""
        text = _reply(request)
        return Completion(
            text=text,
            usage=Usage(_words(request.prompt_text), _words(text)),
            finish_reason="stop",
        )

    def stream(
        self,
        request: ChatRequest,
        *,
        timeout: float,  # noqa: ARG002
        deadline: float | None = None,  # noqa: ARG002 - checked per event by the gateway
    ) -> _EchoStream:
        """Stream the same answer word by word."""
        return _EchoStream(request)

    def embed(
        self,
        model: str,  # noqa: ARG002 - every model embeds alike
        inputs: tuple[str, ...],
        *,
        dimensions: int | None,
        timeout: float,  # noqa: ARG002 - local
    ) -> Embeddings:
        """Hash-derived vectors (development only: they carry no meaning)."""
        size = dimensions or DIMENSIONS
        tokens = sum(_words(text) for text in inputs)
        return Embeddings(tuple(_vector(t, size) for t in inputs), Usage(tokens, 0))
