"""`ApiFlask`: Flask without the two per-request costs a token-authenticated JSON API never uses.

* Cookie sessions. Flask opens a `SecureCookieSession` for every request (building an
  itsdangerous serializer and, on the way out, serializing it) even when no view
  touches `flask.session`. This API authenticates with bearer tokens and API keys
  (docs/auth.md) and sets no cookies, so `session` is Flask's `NullSession`: reading it
  works and is empty, writing it raises with a clear message instead of silently
  issuing a cookie.
* `ensure_sync`. Flask asks `inspect.iscoroutinefunction` about every hook and view on
  every request (14 times for an authenticated GET here). A function does not change
  from sync to async after it is registered, so the answer is cached per function.

Measured by `bench/` (docs/performance.md); behaviour is otherwise Flask's own.
"""

from __future__ import annotations

from collections.abc import Callable
from types import FunctionType
from typing import Any

from flask import Flask, Request, Response
from flask.sessions import SessionInterface, SessionMixin


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
