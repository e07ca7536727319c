"""`/anthropic/v1/messages`: messages for Anthropic clients.

    client = Anthropic(base_url="https://api.example.com/anthropic", api_key="sapi_...")

The SDK sends the key as `x-api-key` (accepted like `X-API-Key`, scope `ai:generate`).
Same pipeline as `POST /v1/ai/generate` (app/ai/generate.py), budgets included; history
rows say `surface: anthropic`.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, current_app, stream_with_context

from app.ai import generate as ai_service
from app.ai.compat import anthropic_wire as wire
from app.ai.extension import gateway
from app.ai.streaming import open_stream
from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.core.db import SESSION_FACTORY, get_session
from app.core.openapi import operation
from app.core.responses import json_response
from app.settings import Settings

bp = Blueprint("anthropic_compat", __name__, url_prefix="/anthropic/v1")

TAGS: Final = ["anthropic-compatible"]


def _settings() -> Settings:
    settings: Settings = current_app.extensions["settings"]
    return settings


@bp.post("/messages")
@require_auth(scopes=["ai:generate"])
@operation(
    "Anthropic-compatible message (JSON, or events with `stream: true`)",
    tags=TAGS,
    body=wire.MessagesBody,
    auth=True,
)
def messages(body: wire.MessagesBody) -> Response:
    """A message for the caller, in Anthropic's shape."""
    chat = wire.chat_request(body)
    call = ai_service.Call(
        current_caller(), None, _settings(), gateway(),
        path=ai_service.GENERATE_PATH, chat=chat, surface="anthropic",
    )  # fmt: skip
    if not body.stream:
        result, public = ai_service.answer(call=call, session=get_session)
        payload = wire.message_json(
            generation_id=public.id, model=body.model, completion=result.completion
        )
        headers = {"X-AI-Generation-Id": str(public.id), "X-AI-Provider": result.provider}
        return json_response(payload, headers=headers)
    stream = open_stream(
        call=call,
        session=get_session(),
        session_factory=current_app.extensions[SESSION_FACTORY],
    )
    fmt = wire.EventFormat(
        generation_id=stream.id, model=body.model, request=chat, first=stream.opened.first
    )
    return Response(
        stream_with_context(stream.run(fmt)),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no",
                 "X-AI-Generation-Id": str(stream.id), "X-AI-Provider": stream.opened.provider},
    )  # fmt: skip
