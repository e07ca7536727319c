"""Response caching for GET views that opt in, and invalidation from the views that write.

    @bp.get("/things")
    @require_auth(...)
    @cached(ttl=30, tags=["things:{caller}"])
    @operation(...)
    def list_things(query): ...

    @bp.post("/things")
    @invalidates("things:{caller}")
    def create_thing(body): ...

Put `@cached` BELOW the auth decorators: authorization runs on every request, hits
included. Keys vary by endpoint, API version, path, normalised query string and, unless
`vary_on_caller=False`, the caller (`user:<id>` / `api_key:<id>` / anonymous). Only the
envelope's `data`, `message` and the view's own warnings are stored; request id, meta
and pipeline warnings are fresh on every response. Responses carry a strong `ETag`
(RFC 9110 section 8.8.3) and `Cache-Control`; `If-None-Match` gets `304` without a body.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any, Final, TypeVar, cast
from urllib.parse import urlencode

from flask import Response, g, make_response, request

from app.auth.identify import current_caller
from app.cache.service import RESULT_HIT, cache_of, invalidate, single_flight
from app.core.encoding import dumps
from app.core.observability import metrics
from app.core.responses import JSON_MIMETYPE, ok
from app.core.warnings import WarningLevel, current_warnings, warn

F = TypeVar("F", bound=Callable[..., Any])

X_CACHE: Final = "X-Cache"
#: Credentials that select the caller (app/auth/identify.py): a shared cache must
#: not hand one caller's response to another (RFC 9111 section 4.1).
VARY_ON_CALLER: Final = "Authorization, X-API-Key"
CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
RESULT_NOT_MODIFIED: Final = "not_modified"


def _query_digest() -> str:
    pairs = sorted(request.args.items(multi=True))
    raw = request.path + "?" + urlencode(pairs)
    return hashlib.sha256(raw.encode()).hexdigest()[:32]


def _resolve(tags: Iterable[str], who: str) -> list[str]:
    values = {"caller": who, **(request.view_args or {})}
    return [tag.format(**values) for tag in tags]


def _caller_key() -> str:
    return current_caller().rate_limit_key or "anonymous"


def _entry_of(response: Response, warnings_before: int) -> tuple[Any, str | None]:
    """The storable part of a 200 JSON envelope, or the response itself (not stored)."""
    if response.status_code != 200 or response.mimetype != JSON_MIMETYPE:
        return response, None
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or body.get("success") is not True:
        return response, None
    data = body.get("data")
    entry = {
        "message": body.get("message"),
        "data": data,
        "etag": hashlib.sha256(dumps(data).encode()).hexdigest()[:32],
        "warnings": [w.to_dict() for w in list(current_warnings())[warnings_before:]],
    }
    return entry, json.dumps(entry, separators=(",", ":"), ensure_ascii=False)


def _respond(entry: dict[str, Any], *, result: str, private: bool, max_age: int) -> Response:
    control = f"private, max-age={max_age}" if private else f"public, max-age={max_age}"
    if max_age == 0:
        control += ", must-revalidate"  # always ask; a 304 is cheap
    if request.if_none_match.contains_weak(entry["etag"]) or request.if_none_match.star_tag:
        response = Response(status=304)
        result = RESULT_NOT_MODIFIED
    else:
        for w in entry["warnings"]:
            warn(w["code"], w["message"], WarningLevel(w["level"]), **w.get("context", {}))
        response = ok(entry["data"], message=entry["message"])
    response.set_etag(entry["etag"])
    response.headers["Cache-Control"] = control
    if private:
        response.headers["Vary"] = VARY_ON_CALLER
    response.headers[X_CACHE] = "HIT" if result == RESULT_HIT else "MISS"
    g.cache_result = result
    return response


def cached(
    ttl: float,
    *,
    tags: Iterable[str] = (),
    vary_on_caller: bool = True,
    max_age: int = 0,
    name: str | None = None,
) -> Callable[[F], F]:
    """Serve a GET view from the Redis cache for `ttl` seconds (see the module docstring).

    `tags` may use `{caller}` and the view's URL arguments (`"note:{note_id}"`).
    `max_age` is what clients may keep without asking (default 0: revalidate each
    time, cheap with `If-None-Match`).
    """

    def decorate(view: F) -> F:
        cache_name = name or view.__name__

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if request.method not in CACHEABLE_METHODS:
                return view(*args, **kwargs)
            who = _caller_key() if vary_on_caller else "public"
            version = g.get("api_version") or "-"
            key = f"r:{request.endpoint}:{version}:{who}:{_query_digest()}"

            def compute() -> tuple[Any, str | None]:
                before = len(current_warnings())
                return _entry_of(make_response(view(*args, **kwargs)), before)

            value, result = single_flight(
                cache_of(),
                key,
                ttl=ttl,
                tags=_resolve(tags, who),
                compute=compute,
                decode=json.loads,
            )
            if isinstance(value, Response):  # not cacheable (an error, a non-JSON body)
                metrics.CACHE_REQUESTS.labels(cache_name, result).inc()
                return value
            response = _respond(value, result=result, private=vary_on_caller, max_age=max_age)
            metrics.CACHE_REQUESTS.labels(cache_name, g.cache_result).inc()
            return response

        return cast(F, wrapper)

    return decorate


def invalidates(*tags: str, name: str | None = None) -> Callable[[F], F]:
    """After a successful (2xx) write, make entries under `tags` stale (same templates)."""

    def decorate(view: F) -> F:
        cache_name = name or view.__name__

        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            response = make_response(view(*args, **kwargs))
            if 200 <= response.status_code < 300:
                invalidate(*_resolve(tags, _caller_key()), cache_name=cache_name)
            return response

        return cast(F, wrapper)

    return decorate
