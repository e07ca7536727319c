"""Errors of the compatible surfaces in the shapes the SDKs parse.

Every error is first raised and rendered as usual (app/core/errors/handlers.py: one
place builds error bodies); an `after_request` hook then rewrites the envelope of a
response under `/openai/` or `/anthropic/` into that API's error object:

    OpenAI:    {"error": {"message", "type", "param", "code"}}
    Anthropic: {"type": "error", "error": {"type", "message", "code"}}

`code` is our semantic code (docs/errors.md). Statuses stay ours, except that a request
the surface refuses as invalid is 400, as both APIs answer it (our 422 validation and
413 prompt-size errors): the SDKs map 400 to `BadRequestError`, 401, 403, 404 and 429 to
their own classes and 5xx to `InternalServerError`. The request id stays in
`X-Request-ID` (the OpenAI SDK's `x-request-id`); Anthropic's SDK reads `request-id`,
set as well.
"""

from __future__ import annotations

import json
from typing import Any, Final, Literal

from flask import Response, request

from app.core.errors import ErrorCode
from app.core.request_context import request_globals

Flavour = Literal["openai", "anthropic"]
JSON: Final = "application/json"
OPENAI_PREFIX: Final = "/openai/"
ANTHROPIC_PREFIX: Final = "/anthropic/"
#: Errors of a request the caller must change: 400 in both APIs.
_AS_BAD_REQUEST: Final = frozenset({413, 415, 422})

_OPENAI_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}
_ANTHROPIC_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    429: "rate_limit_error",
}


def flavour_of(path: str) -> Flavour | None:
    """Which compatible surface `path` belongs to, if any."""
    if path.startswith(OPENAI_PREFIX):
        return "openai"
    if path.startswith(ANTHROPIC_PREFIX):
        return "anthropic"
    return None


def _param(error: dict[str, Any]) -> str | None:
    details = error.get("details") or {}
    if isinstance(details.get("param"), str):
        return str(details["param"])
    fields = [e.get("field") for e in error.get("errors") or [] if isinstance(e, dict)]
    named = [f for f in fields if isinstance(f, str) and f]
    if named:
        return named[0].removeprefix("body.")
    required = error.get("required_fields") or []
    return str(required[0]) if required else None


def _message(body: dict[str, Any], error: dict[str, Any]) -> str:
    message = str(body.get("message") or "")
    problems = [
        f"{e.get('field')}: {e.get('message')}"
        for e in error.get("errors") or []
        if isinstance(e, dict) and e.get("field")
    ]
    if problems:
        message = f"{message} ({'; '.join(problems[:5])})"
    return message


def openai_error(status: int, message: str, code: str, param: str | None) -> dict[str, Any]:
    """OpenAI's error object."""
    kind = _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def anthropic_error(status: int, message: str, code: str) -> dict[str, Any]:
    """Anthropic's error object."""
    if status >= 500:
        kind = "overloaded_error" if status == 503 else "api_error"
    else:
        kind = _ANTHROPIC_TYPES.get(status, "invalid_request_error")
    return {"type": "error", "error": {"type": kind, "message": message, "code": code}}


def reshape(response: Response) -> Response:
    """after_request: our error envelope -> the surface's error object (others unchanged)."""
    flavour = flavour_of(request.path)
    if flavour is None:
        return response
    request_id = request_globals().get("request_id")
    if flavour == "anthropic" and request_id and "request-id" not in response.headers:
        response.headers["request-id"] = request_id
    if (
        response.status_code < 400
        or response.is_streamed
        or response.mimetype != "application/json"
    ):
        return response
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return response
    if not isinstance(body, dict) or body.get("success") is not False:
        return response
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    assert isinstance(error, dict)
    status = 400 if response.status_code in _AS_BAD_REQUEST else response.status_code
    code = str(error.get("code") or ErrorCode.SYS_INTERNAL_ERROR.value)
    message = _message(body, error)
    if flavour == "openai":
        shaped = openai_error(status, message, code, _param(error))
    else:
        shaped = anthropic_error(status, message, code)
    response.set_data(json.dumps(shaped, separators=(",", ":")).encode())
    response.status_code = status
    return response
