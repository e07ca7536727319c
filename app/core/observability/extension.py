"""Logs, metrics and traces behind one seam (cheap when disabled).

`init_app(app, settings)` is the only call the factory makes. With metrics and tracing
both off it registers nothing at all; with metrics on it adds the request hooks (and
`/metrics` on the API port only with METRICS_ON_API_PORT: under gunicorn the master
serves every worker's samples on METRICS_PORT, app/gunicorn_conf.py); with tracing on
it instruments Flask, SQLAlchemy, Redis, httpx and Celery (tracing.py). Names of the
metrics other subsystems record live in `metrics.py`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from flask import Flask, Response

from app.core.observability import metrics
from app.core.request_context import current_request, request_globals
from app.settings import Settings

EXTENSION: Final = "observability"
#: Methods kept as label values; anything else a client invents becomes OTHER.
KNOWN_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT"}
)
_STARTED: Final = "_metrics_started"


def init_app(app: Flask, settings: Settings) -> None:
    """Install the metrics hooks, `/metrics` and tracing as `settings` ask."""
    app.extensions[EXTENSION] = {
        "metrics": settings.metrics_enabled,
        "tracing": settings.tracing_enabled,
    }
    if settings.metrics_enabled:
        _install_http_metrics(app)
        if settings.metrics_on_api_port:  # else gunicorn's master serves METRICS_PORT
            from app.core.observability.endpoint import bp

            app.register_blueprint(bp)
    if settings.tracing_enabled:
        from app.core.observability import tracing

        tracing.instrument_app(app, settings)


def _method_label(method: str) -> str:
    return method if method in KNOWN_METHODS else "OTHER"


def _install_http_metrics(app: Flask) -> None:
    """Time every request from before the pipeline's first hook to after its last one."""
    # `.labels()` validates and locks on every call; the label sets are bounded (route
    # templates x methods x statuses x versions), so their children are kept here.
    in_progress: dict[str, Any] = {}
    children: dict[tuple[str, str, int, str], tuple[Any, Any]] = {}

    def _gauge(method: str) -> Any:
        child = in_progress.get(method)
        if child is None:
            child = in_progress[method] = metrics.HTTP_IN_PROGRESS.labels(method)
        return child

    def _start() -> None:
        setattr(request_globals(), _STARTED, time.perf_counter())
        _gauge(_method_label(current_request().method)).inc()

    def _record(response: Response) -> Response:
        state = request_globals()
        started: float | None = state.get(_STARTED)
        if started is None:
            return response
        req = current_request()
        # The rule *template* (`/v1/notes/<uuid:note_id>`), never the path: a path carries
        # ids and would give every resource its own series.
        rule = req.url_rule
        route = rule.rule if rule is not None else metrics.UNMATCHED_ROUTE
        method = _method_label(req.method)
        version = state.get("api_version") or metrics.NO_VERSION
        status = response.status_code
        key = (route, method, status, version)
        pair = children.get(key)
        if pair is None:
            pair = children[key] = (
                metrics.HTTP_REQUESTS.labels(route, method, str(status), version),
                metrics.HTTP_DURATION.labels(route, method, metrics.status_class(status), version),
            )
        pair[0].inc()
        pair[1].observe(time.perf_counter() - started)
        for warning in state.get("warnings") or ():
            metrics.WARNINGS.labels(warning.code, str(warning.level)).inc()
        return response

    def _finish(_exc: BaseException | None) -> None:
        state = request_globals()
        if state.pop(_STARTED, None) is not None:
            _gauge(_method_label(current_request().method)).dec()

    # First before_request and last after_request (Flask runs after_request hooks in
    # reverse order), so the histogram covers the whole pipeline of docs/architecture.md.
    app.before_request_funcs.setdefault(None, []).insert(0, _start)
    app.after_request_funcs.setdefault(None, []).insert(0, _record)
    app.teardown_request(_finish)
