"""The pipeline stage: check limits before the view, add headers to every response.

Runs right after the caller is identified (DESIGN.md section 4) and before versioning,
authorization and validation, so rejected traffic costs one Redis round trip and no
database work.
"""

from __future__ import annotations

import re
from typing import Final

from flask import Flask, Response, current_app, g, request

from app.core.auth.caller import current_caller
from app.core.errors import ErrorCode
from app.core.errors.exceptions import DependencyUnavailable, RateLimited
from app.core.ratelimit import headers
from app.core.ratelimit.service import Decision, RateLimiter, caller_roles
from app.core.warnings import warn

EXTENSION: Final = "ratelimit"
#: Warning code in the envelope when a fail-open policy served without its limits.
DEGRADED_WARNING: Final = "RATE_LIMITER_DEGRADED"
#: Never limited: probes and scrapes must answer while clients are being throttled.
SKIPPED_PATHS: Final = frozenset({"/livez", "/readyz", "/metrics"})
SKIPPED_PREFIXES: Final = ("/static/", "/docs")
_VERSION_PREFIX: Final = re.compile(r"^/v([0-9]{1,3})(?:/|$)")
_DECISION: Final = "ratelimit"


def limiter(app: Flask | None = None) -> RateLimiter:
    """The rate limiter of `app` (default: the current app)."""
    found: RateLimiter = (app or current_app).extensions[EXTENSION]
    return found


def version_of(path: str, versions: dict[int, str]) -> str | None:
    """`MAJOR.MINOR` of the API version a path addresses (`/v1/...` -> `1.0`), if any."""
    match = _VERSION_PREFIX.match(path)
    if match is None:
        return None
    major = int(match.group(1))
    return versions.get(major, f"{major}.0")


def _limit_request() -> None:
    path = request.path
    if path in SKIPPED_PATHS or path.startswith(SKIPPED_PREFIXES):
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rl: RateLimiter = app.extensions[EXTENSION]
    caller = current_caller()
    roles = caller_roles(caller)
    version = version_of(path, app.extensions.get("api_versions", {}))
    plan = rl.matcher().plan(method=request.method, path=path, version=version, roles=roles)
    if plan.empty:
        return
    decision = rl.check(
        plan,
        caller=caller,
        ip=request.remote_addr or "unknown",
        roles=roles,
        headers=request.headers,
    )
    setattr(g, _DECISION, decision)
    if decision.allowed:
        if decision.degraded:
            warn(
                DEGRADED_WARNING,
                "Rate limits could not be checked (the limiter's store is unreachable); "
                "the request was served without them.",
            )
        return
    if decision.degraded:
        raise DependencyUnavailable(
            ErrorCode.RATE_LIMITER_UNAVAILABLE.description,
            code=ErrorCode.RATE_LIMITER_UNAVAILABLE,
        )
    rule, state = decision.rejected_rule, decision.rejected
    assert rule is not None and state is not None
    raise RateLimited(
        f"Rate limit {state.limit.name} exceeded; retry after {decision.retry_after} s.",
        retry_after=decision.retry_after,
        details={
            "policy": rule.policy,
            "rule": rule.name,
            "limit": state.limit.name,
            "unit": state.limit.unit,
            "quantity": state.limit.quantity,
            "window_seconds": state.limit.window_s,
            "retry_after_seconds": decision.retry_after,
        },
    )


def _add_headers(response: Response) -> Response:
    decision: Decision | None = g.get(_DECISION)
    if decision is not None and decision.states:
        rejected = decision.rejected
        if rejected is not None and rejected.limit.unit != "requests":
            rejected = None  # a token budget refused it: headers describe request quotas
        headers.apply(
            response.headers,
            policy=decision.policy_header,
            states=decision.states,
            rejected=rejected,
        )
    return response


def install(app: Flask) -> None:
    """Register the hooks; call at the `[pipeline:ratelimit]` point of the factory."""
    app.before_request(_limit_request)
    app.after_request(_add_headers)
