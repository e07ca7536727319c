"""The id of the request being served in this context, for log lines.

A context variable, not `flask.g`: log formatting (app/core/observability/logging.py) runs
in every process, the operator's included, and needs no Flask to read it. Set and reset
by app/core/request_context.py around each request.
"""

from __future__ import annotations

from contextvars import ContextVar

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)
