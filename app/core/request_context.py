"""Request ids: accept a well-formed incoming `X-Request-ID`, else generate one."""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from logging import INFO
from typing import Any, Final, cast

from flask import Flask, Request, Response, current_app, g, request
from flask.ctx import _AppCtxGlobals
from flask.globals import _cv_app, _cv_request

from app.core.flaskapp import append_headers
from app.core.ids import REQUEST_ID

REQUEST_ID_HEADER: Final = "X-Request-ID"
# Printable token characters only, bounded length: an id ends up in logs and headers,
# so anything else (newlines, quotes, 4 KB blobs) is replaced rather than echoed.
_WELL_FORMED: Final = re.compile(r"^[A-Za-z0-9._:\-]{8,128}$")
_REQUEST_ID_ENVIRON: Final = "HTTP_X_REQUEST_ID"
_UUID4_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET: Final = (4 << 76) | (0x8000 << 48)

access_log = logging.getLogger("structured_api.access")
_FUNC: Final = "_echo_request_id"
_TOKEN: Final = "_request_id_token"
#: The attributes every access record of this process shares (`_access_record`).
_template: dict[str, Any] | None = None


def _forget_template() -> None:
    global _template
    _template = None  # a forked child has its own pid and start time


os.register_at_fork(after_in_child=_forget_template)


def request_globals() -> _AppCtxGlobals:
    """The object behind `flask.g` for this request.

    Every `g.x` goes through werkzeug's LocalProxy (a context-variable lookup and a
    bound-method dance, ~60 of them per authenticated GET before this was used): hot
    pipeline code reads the context variable behind the proxy (half the cost of the
    proxy's own `_get_current_object`), and the proxy only to raise Flask's error.
    """
    ctx = _cv_app.get(None)
    return ctx.g if ctx is not None else cast(_AppCtxGlobals, g._get_current_object())


def current_request() -> Request:
    """The object behind `flask.request` (see `request_globals`)."""
    ctx = _cv_request.get(None)
    if ctx is None:
        return cast(Request, request._get_current_object())  # type: ignore[attr-defined]
    return ctx.request


def current_application() -> Flask:
    """The object behind `flask.current_app` (see `request_globals`)."""
    ctx = _cv_app.get(None)
    if ctx is None:
        return cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
    return ctx.app


def _incoming_or_new(req: Request) -> str:
    candidate: str = req.environ.get(_REQUEST_ID_ENVIRON, "")  # what `req.headers` reads
    if _WELL_FORMED.fullmatch(candidate):
        return candidate
    # `uuid.uuid4().hex` without the UUID object (its checks cost ~1.5 us): 128 random
    # bits with the version (4) and variant bits of RFC 9562 section 5.4 set.
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


def _access_record(fields: dict[str, Any]) -> logging.LogRecord:
    """`access_log.makeRecord(...)`, copied from a per-process template (`LogRecord.__init__`
    works out the same names every time, ~3 us): only time and thread are its own."""
    global _template
    made = None
    custom = logging.getLogRecordFactory() is not logging.LogRecord  # honoured: no template
    if custom or _template is None:
        made = access_log.makeRecord(access_log.name, INFO, __file__, 0, "request", (), None, _FUNC)
        _template = dict(vars(made))
    shared = _template
    record = made or logging.LogRecord.__new__(logging.LogRecord)
    attrs = record.__dict__
    if made is None:
        now = time.time()  # LogRecord.__init__'s three times (Python 3.11)
        attrs.update(shared, created=now, msecs=int((now - int(now)) * 1000) + 0.0)
        attrs["relativeCreated"] = shared["relativeCreated"] + (now - shared["created"]) * 1000
        if shared["thread"] is not None:  # None when logging.logThreads is off
            attrs.update(thread=threading.get_ident(), threadName=threading.current_thread().name)
    attrs.update(fields)
    return record


def bind_request_id(state: _AppCtxGlobals, request_id: str) -> None:
    """Make `request_id` the request's id: in `g` and on every log line of the request."""
    state.request_id = request_id
    setattr(state, _TOKEN, REQUEST_ID.set(request_id))


def init_app(app: Flask) -> None:
    """Assign a request id before anything else and echo it on the way out."""

    @app.before_request
    def _assign_request_id() -> None:
        state = request_globals()
        bind_request_id(state, _incoming_or_new(current_request()))
        state.started_at = time.perf_counter()
        # `g` outlives a request when an app context was already pushed (tests, CLI):
        # one request's warnings must not reach the next one's envelope.
        state.pop("warnings", None)

    @app.after_request
    def _echo_request_id(response: Response) -> Response:
        state = request_globals()
        request_id: str | None = state.get("request_id")
        if request_id:
            # Only this hook sets it: appended, not searched for.
            append_headers(response.headers, ((REQUEST_ID_HEADER, request_id),))
        started: float | None = state.get("started_at")
        if started is not None and access_log.isEnabledFor(logging.INFO):
            req = current_request()
            rule = req.url_rule
            fields = {
                "request_id": request_id,
                "method": req.method,
                "route": rule.rule if rule is not None else None,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "warnings": len(state.get("warnings") or ()),
            }
            # `access_log.info(...)` less its stack walk for the caller (findCaller):
            # the place is always this one. Handlers and filters run as usual.
            access_log.handle(_access_record(fields))
        return response

    @app.teardown_request
    def _unbind_request_id(_exc: BaseException | None) -> None:
        # The thread serves other requests next: its log lines must not carry this id.
        token = request_globals().pop(_TOKEN, None)
        if token is not None:
            try:
                REQUEST_ID.reset(token)
            except ValueError:  # torn down in another context (a finished stream)
                REQUEST_ID.set(None)
