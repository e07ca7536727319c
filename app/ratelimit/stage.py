"""The pipeline stage: check limits before the view, add headers to every response.

Runs right after the caller is identified (docs/architecture.md) and before versioning,
authorization and validation, so rejected traffic costs one Redis round trip and no
database work.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from flask import Flask, Request, Response, current_app
from flask.ctx import _AppCtxGlobals

from app.auth import gates
from app.auth.caller import ANONYMOUS, Caller
from app.core import client_ip
from app.core.errors import ErrorCode
from app.core.errors.exceptions import DependencyUnavailable, RateLimited
from app.core.request_context import current_request, request_globals
from app.core.warnings import warn
from app.ratelimit import headers
from app.ratelimit.service import Decision, RateLimiter, caller_roles
from app.ratelimit.store import StoreUnavailable

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


def read_gate_keys(keys: Sequence[str]) -> list[bytes | None] | None:
    """The values of a deferred gate's keys from the limiter's store (None: unreachable)."""
    try:
        return limiter().store.read(keys)
    except StoreUnavailable:
        return None


def _limit_request() -> None:
    req = current_request()
    state = request_globals()
    state.pop(_DECISION, None)  # `g` can outlive a request (tests, CLI)
    path = req.path
    if path in SKIPPED_PATHS or path.startswith(SKIPPED_PREFIXES):
        gates.resolve_pending_gate()
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    rl: RateLimiter = app.extensions[EXTENSION]
    versions = app.extensions.get("api_versions", {})
    gate = gates.take_gate()
    ip = client_ip.bucket(req.remote_addr, app.extensions["settings"].ratelimit_ipv6_prefix)
    decision = _check(rl, req, state, versions, ip=ip, gates=gate.keys if gate else ())
    if gate is not None:
        if decision is None:
            gate.resolve(read_gate_keys(gate.keys))
        else:
            gate.resolve(decision.gate_values)
            if decision.gated:
                # Nothing was charged; the caller may have changed (a revoked token is now
                # anonymous): check again for whoever it is now.
                decision = _check(rl, req, state, versions, ip=ip, gates=())
    if decision is None:
        return
    setattr(state, _DECISION, decision)
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
    rule, limit_state = decision.rejected_rule, decision.rejected
    assert rule is not None and limit_state is not None
    raise RateLimited(
        f"Rate limit {limit_state.limit.name} exceeded; retry after {decision.retry_after} s.",
        retry_after=decision.retry_after,
        details={
            "policy": rule.policy,
            "rule": rule.name,
            "limit": limit_state.limit.name,
            "unit": limit_state.limit.unit,
            "quantity": limit_state.limit.quantity,
            "window_seconds": limit_state.limit.window_s,
            "retry_after_seconds": decision.retry_after,
        },
    )


def _check(
    rl: RateLimiter,
    req: Request,
    state: _AppCtxGlobals,
    versions: dict[int, str],
    *,
    ip: str,
    gates: Sequence[str],
) -> Decision | None:
    """The decision for the current caller, or None when nothing limits the request."""
    caller: Caller = state.get("caller") or ANONYMOUS
    roles = caller_roles(caller)
    path = req.path
    plan = rl.matcher().plan(
        method=req.method, path=path, version=version_of(path, versions), roles=roles
    )
    if plan.empty:
        return None
    return rl.check(
        plan,
        caller=caller,
        ip=ip,
        roles=roles,
        headers=req.headers,
        gates=gates,
    )


def _add_headers(response: Response) -> Response:
    decision: Decision | None = request_globals().get(_DECISION)
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
