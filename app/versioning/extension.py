"""API version lifecycle in the request pipeline (docs/architecture.md).

For every request under `/v{n}/` this reads the `ApiVersion` of `/v{n}` from the config
snapshot (versions the code serves but the store does not mention are Current if
newest, else Supported), then:

* sets `g.api_version` (envelope `meta.api_version`, metrics) and `API-Version`;
* adds `Deprecation` / `Sunset` / `Link` headers and a `VERSION_DEPRECATED` warning;
* answers 410 `VERSION_RETIRED` / `VERSION_BROWNOUT` before any view runs, except
  for `/v{n}/openapi.json` (the contract of a retired version stays readable so its
  clients can migrate) and `VERSION_LIFECYCLE_EXEMPT_PATHS` (login and the admin API,
  so retiring v1 cannot lock out the operator who did it);
* answers 404 `VERSION_UNKNOWN` for `/v{n}/...` the code does not serve.

See docs/versioning.md.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

from flask import Flask, Response, current_app, request
from werkzeug.exceptions import HTTPException

from app.core.errors import ApiError, ErrorCode
from app.core.flaskapp import append_headers
from app.core.request_context import current_request, request_globals
from app.core.warnings import WarningLevel, warn
from app.versioning import usage
from app.versioning.lifecycle import Lifecycle, default_phases, evaluate

API_VERSION_HEADER: Final = "API-Version"
DEPRECATED_WARNING: Final = "VERSION_DEPRECATED"
VERSIONED_PATH: Final = re.compile(r"^/v(?P<major>[0-9]{1,3})(?:/|$)")
DOCUMENT_SUFFIX: Final = "/openapi.json"
_G_KEY: Final = "api_lifecycle"
#: What `Lifecycle.headers` may hold; a view that set one of them is overridden, not joined.
_LIFECYCLE_NAMES: Final = frozenset({"api-version", "deprecation", "sunset"})
CONFIG_STORE: Final = "config_store"  # app.config_store.EXTENSION
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)  # undeclared versions ignore the clock
_UNDECLARED: dict[tuple[str, tuple[tuple[int, str], ...]], Lifecycle] = {}


def served_versions(app: Flask | None = None) -> dict[int, str]:
    """Major -> `MAJOR.MINOR` of every version this code serves."""
    versions: dict[int, str] = (app or current_app).extensions["api_versions"]
    return versions


def changelog_path(old: str, new: str) -> str:
    """Where the machine-readable changelog between two versions lives."""
    return f"/versions/{old}/changes-to/{new}"


def _successor_link(successor: str, major: int) -> str:
    """The same resource in the successor version if it exists there, else its document."""
    target = int(successor.split(".")[0])
    if target not in served_versions():
        return "/versions"
    candidate = f"/v{target}{request.path[len(f'/v{major}') :]}"
    try:
        current_app.url_map.bind("localhost").match(candidate, method=request.method)
    except HTTPException:
        return f"/v{target}{DOCUMENT_SUFFIX}"
    return candidate


def _deprecation_warning(life: Lifecycle) -> None:
    message = f"API version {life.version} is deprecated"
    context: dict[str, str] = {"version": life.version}
    if life.sunset_at:
        message += f" and will stop working on {life.sunset_at.date().isoformat()}"
        context["sunset"] = life.sunset_at.isoformat()
    if life.successor:
        message += f"; move to {life.successor}"
        context["successor"] = life.successor
        context["changelog"] = changelog_path(life.version, life.successor)
    warn(DEPRECATED_WARNING, message + ".", WarningLevel.WARN, **context)


def _refuse(life: Lifecycle) -> ApiError:
    details: dict[str, object] = {"version": life.version, "phase": life.phase.value}
    if life.successor:
        details["successor"] = life.successor
        details["changelog"] = changelog_path(life.version, life.successor)
    if life.sunset_at:
        details["sunset"] = life.sunset_at.isoformat()
    headers: dict[str, str] = {}
    if life.gone is ErrorCode.VERSION_BROWNOUT:
        message = (
            f"API version {life.version} is in a scheduled brownout, a rehearsal of its "
            f"retirement; retry after {life.retry_after} s or move on."
        )
        headers["Retry-After"] = str(life.retry_after)
    else:
        message = f"API version {life.version} is retired."
    if life.successor:
        message += f" Use version {life.successor}."
    return ApiError(message, code=life.gone, details=details, headers=headers)


def _exempt(path: str) -> bool:
    # The document stays readable for migration; login and the admin API stay reachable
    # so whoever retired a version can still undo it (VERSION_LIFECYCLE_EXEMPT_PATHS).
    if path.endswith(DOCUMENT_SUFFIX):
        return True
    prefixes: list[str] = current_app.extensions["settings"].version_lifecycle_exempt_paths
    return path.startswith(tuple(prefixes))


def apply_lifecycle() -> None:
    """before_request: resolve the version of the path and enforce its lifecycle."""
    state = request_globals()
    # `g` outlives a request when an app context was already pushed (tests, CLI): start
    # clean so one request's version never leaks into the next.
    state.pop(_G_KEY, None)
    state.pop("api_version", None)
    req = current_request()
    path = req.path
    match = VERSIONED_PATH.match(path)
    if match is None:
        return
    major = int(match["major"])
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    served = served_versions(app)
    version = served.get(major)
    if version is None:
        if req.url_rule is None:
            raise ApiError(
                f"API version v{major} does not exist.",
                code=ErrorCode.VERSION_UNKNOWN,
                details={"served": [served[m] for m in sorted(served)]},
            )
        return  # a route outside the versioned API that happens to look like one
    state.api_version = version
    usage.record(app, version, state.get("caller"))  # in memory; flushed by a thread
    spec = app.extensions[CONFIG_STORE].current().api_version(major)
    if spec is None:
        # Undeclared (the common case until an ApiVersion is applied): only the header.
        life = _undeclared(version, served)
    else:
        life = evaluate(
            spec,
            version=version,
            default_phase=default_phases(served)[major],
            now=datetime.now(UTC),
            successor_link=_successor_link(spec.successor, major) if spec.successor else None,
        )
    setattr(state, _G_KEY, life)
    if life.deprecated:
        _deprecation_warning(life)
    if life.gone is not None and not _exempt(path):
        raise _refuse(life)


def _undeclared(version: str, served: dict[int, str]) -> Lifecycle:
    """The (immutable, cached) lifecycle of a served version no ApiVersion declares."""
    key = (version, tuple(served.items()))
    life = _UNDECLARED.get(key)
    if life is None:
        major = int(version.split(".")[0])
        life = _UNDECLARED[key] = evaluate(
            None, version=version, default_phase=default_phases(served)[major], now=_EPOCH
        )
    return life


def add_headers(response: Response) -> Response:
    """after_request: lifecycle headers on every versioned response, errors included."""
    life: Lifecycle | None = request_globals().get(_G_KEY)
    if life is not None:
        headers = response.headers
        pairs = [*life.headers.items(), *(("Link", link) for link in life.links)]
        if any(name.lower() in _LIFECYCLE_NAMES for name, _ in headers._list):
            for name, value in life.headers.items():  # the view set one: replace it
                headers[name] = value
            pairs = pairs[len(life.headers) :]
        append_headers(headers, pairs)
    return response


def init_app(app: Flask) -> None:
    """Install the lifecycle hooks (call at the factory's `[pipeline:versioning]`)."""
    app.before_request(apply_lifecycle)
    app.after_request(add_headers)
