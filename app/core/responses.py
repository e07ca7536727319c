"""The response envelope every endpoint returns, errors included.

{"success", "message", "data", "error", "warnings", "meta": {"request_id", "api_version"}}
"""

from __future__ import annotations

from typing import Any

from flask import Response, has_request_context
from pydantic import BaseModel

from app.core.encoding import dumpb
from app.core.request_context import current_application, request_globals
from app.core.warnings import current_warnings

JSON_MIMETYPE = "application/json"


def meta() -> dict[str, Any]:
    """The `meta` block: request id and the API version serving the request."""
    out: dict[str, Any] = {"request_id": None, "api_version": None}
    if has_request_context():
        state = request_globals()
        out["request_id"] = state.get("request_id")
        out["api_version"] = state.get("api_version")
    return out


def envelope(
    *,
    success: bool,
    data: Any = None,
    message: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the envelope dict, pulling warnings and meta from the request."""
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    return {
        "success": success,
        "message": message,
        "data": data,
        "error": error,
        "warnings": _warnings_json(),
        "meta": meta(),
    }


def _warnings_json() -> list[dict[str, Any]]:
    # Most requests warn about nothing: no collector is created just to say so.
    if has_request_context() and request_globals().get("warnings") is None:
        return []
    return current_warnings().to_list()


def json_response(body: dict[str, Any], status: int = 200, headers: Any = None) -> Response:
    """Serialise an envelope into a Flask response."""
    # `content_type`, not `mimetype`: JSON has no charset parameter (RFC 8259 section 11),
    # and werkzeug then skips working one out per response.
    response = current_application().response_class(
        dumpb(body), status=status, content_type=JSON_MIMETYPE, headers=headers
    )
    return response


def ok(
    data: Any = None,
    *,
    status: int = 200,
    message: str | None = None,
    headers: Any = None,
) -> Response:
    """A success envelope."""
    return json_response(
        envelope(success=True, data=data, message=message), status=status, headers=headers
    )


def created(
    data: Any = None, *, location: str | None = None, message: str | None = None
) -> Response:
    """A 201 success envelope with an optional Location header."""
    headers = {"Location": location} if location else None
    return ok(data, status=201, message=message, headers=headers)


def accepted(data: Any = None, *, location: str, message: str | None = None) -> Response:
    """A 202 success envelope pointing at the job resource."""
    return ok(data, status=202, message=message, headers={"Location": location})
