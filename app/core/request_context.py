"""Request ids: accept a well-formed incoming `X-Request-ID`, else generate one."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Final

from flask import Flask, Response, g, request

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Printable token characters only, bounded length: an id ends up in logs and headers,
# so anything else (newlines, quotes, 4 KB blobs) is replaced rather than echoed.
_WELL_FORMED: Final = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")

access_log = logging.getLogger("structured_api.access")


def _incoming_or_new() -> str:
    candidate = request.headers.get(REQUEST_ID_HEADER, "")
    if _WELL_FORMED.fullmatch(candidate):
        return candidate
    return uuid.uuid4().hex


def init_app(app: Flask) -> None:
    """Assign a request id before anything else and echo it on the way out."""

    @app.before_request
    def _assign_request_id() -> None:
        g.request_id = _incoming_or_new()
        g.started_at = time.perf_counter()

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id:
            response.headers[REQUEST_ID_HEADER] = request_id
        started = g.get("started_at")
        if started is not None and access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "request",
                extra={
                    "method": request.method,
                    "route": request.url_rule.rule if request.url_rule else None,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "warnings": len(g.get("warnings") or ()),
                },
            )
        return response
