"""Token estimates for when a provider reports no usage, and for budget reservations.

Rule of thumb from OpenAI's tokenizer docs: about 4 characters of English per token,
plus a few tokens of framing per chat message. An estimate is always marked as such
(`Usage.estimated`, the `AI_USAGE_ESTIMATED` warning, the history row), never passed off
as the provider's count.
"""

from __future__ import annotations

import json
from typing import Final

from app.ai.types import ChatRequest, Usage

CHARS_PER_TOKEN: Final = 4
TOKENS_PER_MESSAGE: Final = 4  # role and separators (OpenAI cookbook, "counting tokens")
#: An image at low detail (platform.openai.com/docs/guides/images-vision, "Calculating
#: costs"); high detail costs more, which the settlement corrects.
TOKENS_PER_IMAGE: Final = 85


def estimate_text(text: str) -> int:
    """Tokens in `text`, rounded up (0 for empty text)."""
    return -(-len(text) // CHARS_PER_TOKEN)


def estimate_input(request: ChatRequest) -> int:
    """Tokens the prompt of `request` is likely to cost (tool schemas included)."""
    tokens = sum(
        estimate_text(m.text) + TOKENS_PER_MESSAGE + TOKENS_PER_IMAGE * len(m.images)
        for m in request.messages
    )
    for tool in request.tools:
        tokens += estimate_text(tool.name + (tool.description or ""))
        tokens += estimate_text(json.dumps(dict(tool.parameters), separators=(",", ":")))
    return tokens


def reservation_for(request: ChatRequest) -> int:
    """What to reserve from a budget before calling: estimated input plus `max_tokens`."""
    return estimate_input(request) + request.max_tokens


def estimated_usage(request: ChatRequest, output_text: str, *, output_chunks: int = 0) -> Usage:
    """Usage when the provider sent none: input from the prompt, output from what came back.

    Streamed providers send about one token per chunk, so the chunk count is a floor.
    """
    output = max(estimate_text(output_text), output_chunks)
    return Usage(estimate_input(request), output, estimated=True)


def merge_usage(
    request: ChatRequest,
    *,
    input_tokens: int | None,
    output_tokens: int | None,
    output_text: str,
    output_chunks: int = 0,
) -> Usage:
    """Reported counts where present, estimates for the rest (marked estimated if any)."""
    if input_tokens is not None and output_tokens is not None:
        return Usage(input_tokens, output_tokens)
    guess = estimated_usage(request, output_text, output_chunks=output_chunks)
    return Usage(
        input_tokens if input_tokens is not None else guess.input_tokens,
        output_tokens if output_tokens is not None else guess.output_tokens,
        estimated=True,
    )
