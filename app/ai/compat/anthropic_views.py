"""`/anthropic/v1/messages`: messages for Anthropic clients.

    client = Anthropic(base_url="https://api.example.com/anthropic", api_key="sapi_...")

The SDK sends the key as `x-api-key` (accepted like `X-API-Key`, scope `ai:generate`).
Same pipeline as `POST /v1/ai/generate` (app/ai/generate.py), budgets included; history
rows say `surface: anthropic`.
"""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response

from app.ai import generate as ai_service
from app.ai import http as ai_http
from app.ai.compat import anthropic_wire as wire
from app.ai.extension import gateway
from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import json_response

bp = Blueprint("anthropic_compat", __name__, url_prefix="/anthropic/v1")

TAGS: Final = ["anthropic-compatible"]


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
        current_caller(), None, ai_http.settings(), gateway(),
        path=ai_service.GENERATE_PATH, chat=chat, surface="anthropic",
    )  # fmt: skip
    if not body.stream:
        result, public = ai_service.answer(call=call, session=get_session)
        payload = wire.message_json(
            generation_id=public.id, model=body.model, completion=result.completion
        )
        return json_response(payload, headers=ai_http.answer_headers(public.id, result.provider))
    stream = ai_http.open_request_stream(call)
    fmt = wire.EventFormat(
        generation_id=stream.id, model=body.model, request=chat, first=stream.opened.first
    )
    return ai_http.event_stream(
        stream.run(fmt), ai_http.answer_headers(stream.id, stream.opened.provider)
    )
