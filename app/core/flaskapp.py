"""`ApiFlask`: Flask without the per-request costs a token-authenticated JSON API never uses.

* Cookie sessions. Flask opens a `SecureCookieSession` for every request (building an
  itsdangerous serializer and, on the way out, serializing it) even when no view
  touches `flask.session`. This API authenticates with bearer tokens and API keys
  (docs/auth.md) and sets no cookies, so `session` is Flask's `NullSession`: reading it
  works and is empty, writing it raises with a clear message instead of silently
  issuing a cookie.
* `ensure_sync`. Flask asks `inspect.iscoroutinefunction` about every hook and view on
  every request (14 times for an authenticated GET here). A function does not change
  from sync to async after it is registered, so the answer is cached per function.
* Hook dispatch. Flask finds the hooks of a request through `flask.request` (a
  context-variable proxy) and recomputes `request.blueprints` in each of its three hook
  steps; `ApiFlask` resolves the request once per step. Hooks run in Flask's order.
* Header checks. werkzeug checks each header value when it is set and again when
  `get_wsgi_headers` copies the list; `ApiResponse` copies the checked list as it is,
  `append_headers` checks the pipeline's own pairs without werkzeug's dispatch per item.

Measured by `bench/` (docs/performance.md); behaviour is otherwise Flask's own.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from types import FunctionType
from typing import TYPE_CHECKING, Any

from flask import Flask, Request, Response
from flask.globals import _cv_request
from flask.sansio.scaffold import _sentinel
from flask.sessions import SessionInterface, SessionMixin
from flask.signals import request_tearing_down
from werkzeug.datastructures import Headers
from werkzeug.urls import iri_to_uri

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment
    from flask.typing import ResponseReturnValue

_NO_BODY_LENGTH = frozenset({204, 304})
_URL_HEADERS = frozenset({"location", "content-location"})


def append_headers(headers: Headers, pairs: Sequence[tuple[str, str]]) -> None:
    """`headers.extend(pairs)` for headers only the pipeline sets: newlines refused too."""
    for _name, value in pairs:
        if "\n" in value or "\r" in value:
            raise ValueError("Header values must not contain newline characters.")
    headers._list.extend(pairs)  # the list werkzeug's own `add` appends to


class ApiResponse(Response):
    """Flask's response; its headers reach the server without being checked a second time."""

    def get_wsgi_headers(self, environ: WSGIEnvironment) -> Headers:
        """werkzeug's result: its own code when it would change a header (URLs made URIs,
        1xx/204/304 bodies, a missing length), else the checked list copied as it is."""
        status = self.status_code
        if status < 200 or status in _NO_BODY_LENGTH or self.autocorrect_location_header:
            return super().get_wsgi_headers(environ)
        items = self.headers._list
        has_length = False
        urls: set[str] = set()
        for key, value in items:
            lowered = key.lower()
            if lowered == "content-length":
                has_length = True
            elif lowered in _URL_HEADERS:
                if lowered in urls or iri_to_uri(value) != value:
                    return super().get_wsgi_headers(environ)  # it would rewrite or fold them
                urls.add(lowered)
        if not has_length:  # werkzeug may work one out
            return super().get_wsgi_headers(environ)
        headers = Headers()
        headers._list = list(items)
        return headers


class NoCookieSessions(SessionInterface):
    """Every request gets Flask's `NullSession`; nothing is ever written back."""

    def open_session(self, app: Flask, request: Request) -> SessionMixin | None:  # noqa: ARG002
        """None makes Flask use `make_null_session` (read empty, refuse writes)."""
        return None

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        """Nothing to save: this API issues no cookies."""


class ApiFlask(Flask):
    """The application class `create_app` builds."""

    session_interface = NoCookieSessions()
    response_class = ApiResponse

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._sync_wrappers: dict[Callable[..., Any], Callable[..., Any]] = {}

    def ensure_sync(self, func: Callable[..., Any]) -> Callable[..., Any]:
        """Flask's answer for `func`, computed once per plain function.

        Only functions are cached: they are registered once and live as long as the app.
        A bound method (a class-based view's handler) is a new object per instance, so a
        cache keyed by it would grow with every request.
        """
        if type(func) is not FunctionType:
            return super().ensure_sync(func)
        wrapped = self._sync_wrappers.get(func)
        if wrapped is None:
            wrapped = self._sync_wrappers[func] = super().ensure_sync(func)
        return wrapped

    def preprocess_request(self) -> ResponseReturnValue | None:
        """Flask's: URL value preprocessors, then before_request hooks, app's first."""
        req = _cv_request.get().request
        names = (None, *reversed(req.blueprints))
        for name in names:
            for url_func in self.url_value_preprocessors.get(name, ()):
                url_func(req.endpoint, req.view_args)
        for name in names:
            for before_func in self.before_request_funcs.get(name, ()):
                rv = self.ensure_sync(before_func)()
                if rv is not None:
                    return rv  # type: ignore[no-any-return]
        return None

    def process_response(self, response: Response) -> Response:
        """Flask's: this request's own hooks, then after_request hooks in reverse order."""
        ctx = _cv_request.get()
        for func in ctx._after_request_functions:
            response = self.ensure_sync(func)(response)
        for name in (*ctx.request.blueprints, None):
            for func in reversed(self.after_request_funcs.get(name, ())):
                response = self.ensure_sync(func)(response)
        if not self.session_interface.is_null_session(ctx._session):
            session: Any = ctx._session
            self.session_interface.save_session(self, session, response)
        return response

    def do_teardown_request(
        self,
        exc: BaseException | None = _sentinel,  # type: ignore[assignment]
    ) -> None:
        """Flask's: teardown_request hooks in reverse order, then the signal."""
        if exc is _sentinel:
            exc = sys.exc_info()[1]
        for name in (*_cv_request.get().request.blueprints, None):
            for func in reversed(self.teardown_request_funcs.get(name, ())):
                self.ensure_sync(func)(exc)
        request_tearing_down.send(self, _async_wrapper=self.ensure_sync, exc=exc)
