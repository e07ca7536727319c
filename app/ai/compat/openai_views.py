"""`/openai/v1/...`: chat completions, models and embeddings for OpenAI clients.

    client = OpenAI(base_url="https://api.example.com/openai/v1", api_key="sapi_...")

Same pipeline as `POST /v1/ai/generate` (app/ai/generate.py): the key needs scope
`ai:generate`; token and money budgets are the ones matching `POST /v1/ai/generate`
(one set of budgets for every surface); history rows say `surface: openai`.
"""

from __future__ import annotations

from typing import Any, Final

from flask import Blueprint, Response

from app.ai import generate as ai_service
from app.ai import http as ai_http
from app.ai.compat import openai_stream
from app.ai.compat import openai_wire as wire
from app.ai.embedding import embed
from app.ai.extension import gateway
from app.auth.decorators import require_auth
from app.auth.identify import current_caller
from app.core.db import get_session
from app.core.errors import ApiError, ErrorCode
from app.core.openapi import operation
from app.core.responses import json_response
from app.ratelimit.service import caller_roles

bp = Blueprint("openai_compat", __name__, url_prefix="/openai/v1")

TAGS: Final = ["openai-compatible"]
OWNED_BY: Final = "structured-api"


@bp.post("/chat/completions")
@require_auth(scopes=["ai:generate"])
@operation(
    "OpenAI-compatible chat completion (JSON, or chunks with `stream: true`)",
    tags=TAGS,
    body=wire.ChatCompletionBody,
    auth=True,
)
def chat_completions(body: wire.ChatCompletionBody) -> Response:
    """A chat completion for the caller, in OpenAI's shape."""
    settings = ai_http.settings()
    chat = wire.chat_request(body, default_max_tokens=settings.ai_default_max_tokens)
    call = ai_service.Call(
        current_caller(), None, settings, gateway(),
        path=ai_service.GENERATE_PATH, chat=chat, surface="openai",
    )  # fmt: skip
    if not body.stream:
        result, public = ai_service.answer(call=call, session=get_session)
        payload = wire.completion_json(
            generation_id=public.id, model=body.model, completion=result.completion
        )
        return json_response(payload, headers=ai_http.answer_headers(public.id, result.provider))
    stream = ai_http.open_request_stream(call)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    fmt = openai_stream.ChunkFormat(
        generation_id=stream.id, model=body.model, include_usage=include_usage
    )
    return ai_http.event_stream(
        stream.run(fmt), ai_http.answer_headers(stream.id, stream.opened.provider)
    )


def _model_json(name: str) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": 0, "owned_by": OWNED_BY}


@bp.get("/models")
@require_auth(scopes=["ai:generate"], allow_readonly=True)
@operation("The models the caller may use (OpenAI's list shape)", tags=TAGS, auth=True)
def list_models() -> Response:
    """Public model names the caller's roles may use."""
    visible = gateway().registry().visible(caller_roles(current_caller()))
    return json_response({"object": "list", "data": [_model_json(m.name) for m in visible]})


@bp.get("/models/<path:model>")
@require_auth(scopes=["ai:generate"], allow_readonly=True)
@operation("One model the caller may use", tags=TAGS, auth=True, errors=[404])
def get_model(model: str) -> Response:
    """A model by name; 404 when it does not exist or the caller may not use it."""
    visible = gateway().registry().visible(caller_roles(current_caller()))
    if not any(m.name == model for m in visible):
        raise ApiError(
            f"The model {model!r} does not exist or you do not have access to it.",
            code=ErrorCode.AI_MODEL_NOT_FOUND,
            details={"model": model, "param": "model"},
        )
    return json_response(_model_json(model))


@bp.post("/embeddings")
@require_auth(scopes=["ai:generate"])
@operation("OpenAI-compatible embeddings", tags=TAGS, body=wire.EmbeddingsBody, auth=True)
def embeddings(body: wire.EmbeddingsBody) -> Response:
    """Vectors for the inputs, from the first target of the model that can embed."""
    inputs = (body.input,) if isinstance(body.input, str) else tuple(body.input)
    if not inputs:
        raise wire.unsupported("input", "at least one input is needed")
    result, generation_id = embed(
        caller=current_caller(), settings=ai_http.settings(), gateway=gateway(), model=body.model,
        inputs=inputs, dimensions=body.dimensions, session=get_session, surface="openai",
    )  # fmt: skip
    usage = result.embeddings.usage
    assert usage is not None
    payload = wire.embeddings_json(
        model=body.model,
        vectors=result.embeddings.vectors,
        usage=usage,
        base64=body.encoding_format == "base64",
    )
    return json_response(payload, headers=ai_http.answer_headers(generation_id, result.provider))
