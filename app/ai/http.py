"""What the AI views of every surface share: settings, an opened stream, its response."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Final

from flask import Response, current_app, stream_with_context

from app.ai import generate as ai_service
from app.ai.streaming import GenerationStream, open_stream
from app.core.db import SESSION_FACTORY, get_session
from app.settings import Settings

SSE_MIMETYPE: Final = "text/event-stream"
#: No proxy buffering (nginx honours X-Accel-Buffering) and no caching.
SSE_HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def settings() -> Settings:
    """The app's settings."""
    value: Settings = current_app.extensions["settings"]
    return value


def open_request_stream(call: ai_service.Call) -> GenerationStream:
    """Open `call`'s provider stream with this request's session (see `open_stream`)."""
    return open_stream(
        call=call,
        session=get_session(),
        session_factory=current_app.extensions[SESSION_FACTORY],
    )


def answer_headers(generation_id: Any, provider: str) -> dict[str, str]:
    """The generation id and the provider that answered, on every surface's answer."""
    return {"X-AI-Generation-Id": str(generation_id), "X-AI-Provider": provider}


def event_stream(events: Iterator[bytes], headers: Mapping[str, str] | None = None) -> Response:
    """A server-sent events response of `events`, inside the request's context."""
    return Response(
        stream_with_context(events),
        mimetype=SSE_MIMETYPE,
        headers={**SSE_HEADERS, **(headers or {})},
    )
