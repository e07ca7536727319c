"""OpenAI's `chat.completion.chunk` stream (platform.openai.com/docs/api-reference/chat-streaming),
as a surface we serve; the request side and the JSON answer are in `openai_wire.py`."""

from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

from app.ai.compat.openai_wire import completion_id, usage_json
from app.ai.errors import ProviderFailure
from app.ai.types import FINISH_STOP, StreamEvent, Usage
from app.core.errors import ApiError


def _data(payload: Any) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


class ChunkFormat:
    """OpenAI's `chat.completion.chunk` stream: a role chunk, content and tool-call deltas,
    a chunk with the finish reason, the usage chunk when asked for
    (`stream_options.include_usage`), then `data: [DONE]`. A failure after the first
    chunk is a `data: {"error": {...}}` event (the SDKs raise `APIError` on it)."""

    def __init__(self, *, generation_id: Any, model: str, include_usage: bool) -> None:
        self.id = completion_id(generation_id)
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())
        self.finish: str | None = None

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": None,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        }

    def start(self) -> bytes:
        """The role chunk."""
        return _data(self._chunk({"role": "assistant", "content": ""}))

    def event(self, event: StreamEvent) -> bytes:
        """Content and tool-call deltas (the finish reason waits for the end)."""
        delta: dict[str, Any] = {}
        if event.text:
            delta["content"] = event.text
        if event.tool_calls:
            calls = []
            for call in event.tool_calls:
                piece: dict[str, Any] = {"index": call.index}
                function: dict[str, Any] = {"arguments": call.arguments}
                if call.id is not None:
                    piece["id"], piece["type"] = call.id, "function"
                if call.name:
                    function["name"] = call.name
                piece["function"] = function
                calls.append(piece)
            delta["tool_calls"] = calls
        return _data(self._chunk(delta)) if delta else b""

    def done(self, usage: Usage, cost: Decimal, finish_reason: str | None) -> bytes:  # noqa: ARG002
        """Finish chunk, usage chunk if asked for, `[DONE]`."""
        out = _data(self._chunk({}, finish_reason or FINISH_STOP))
        if self.include_usage:
            last = self._chunk({})
            last["choices"] = []
            last["usage"] = usage_json(usage)
            out += _data(last)
        return out + b"data: [DONE]\n\n"

    def error(self, error: ApiError, failure: ProviderFailure) -> bytes:  # noqa: ARG002
        """An error event in OpenAI's error shape."""
        status = error.status
        kind = "server_error" if status >= 500 else "invalid_request_error"
        return _data(
            {"error": {"message": error.message, "type": kind, "param": None,
                       "code": error.code.value}}
        )  # fmt: skip
