"""`require_auth` / `require_roles`: authorize the caller `identify()` found.

Put them ABOVE `@operation(...)` (outer), so authorization runs before the body is
validated: an anonymous caller gets 401, not 422, and a forbidden one 403
(docs/architecture.md: authorize, then validate). Exceptions raised by the view itself
(404, 422, ...) pass through untouched; nothing here catches them.

    @bp.post("/things")
    @require_roles("user", scopes=["things:write"])
    @operation("Create a thing", body=ThingCreate, auth=True, roles=["user"])
    def create_thing(body: ThingCreate) -> Response: ...
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final, TypeVar, cast

from app.auth import gates
from app.auth.caller import ANONYMOUS, Caller, Role
from app.auth.identify import REALM
from app.auth.models.user import User
from app.core.db import get_session
from app.core.errors import ApiError, ErrorCode, Forbidden, Unauthorized
from app.core.request_context import current_request, request_globals

F = TypeVar("F", bound=Callable[..., Any])

ATTR: Final = "__auth_requirement__"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass(frozen=True)
class Requirement:
    """What a route demands of its caller."""

    scopes: frozenset[str] = frozenset()
    roles: tuple[str, ...] = ()
    allow_readonly: bool = False
    load_user: bool = False

    @property
    def accepts_api_keys(self) -> bool:
        """API keys may call only routes that name the scopes they need."""
        return bool(self.scopes)


def find_requirement(view: Callable[..., Any]) -> Requirement | None:
    """The auth requirement of a view, looking through decorators."""
    current: Any = view
    while current is not None:
        req = getattr(current, ATTR, None)
        if req is not None:
            return cast(Requirement, req)
        current = getattr(current, "__wrapped__", None)
    return None


def _load_user(caller: Caller) -> Any:
    try:
        user_id = uuid.UUID(str(caller.subject))
    except ValueError:
        raise Unauthorized(code=ErrorCode.AUTH_INVALID_TOKEN) from None
    user = get_session().get(User, user_id)
    if user is None:
        raise Unauthorized("The account no longer exists.", code=ErrorCode.AUTH_INVALID_TOKEN)
    if user.disabled_at is not None:
        raise Forbidden(code=ErrorCode.AUTH_ACCOUNT_DISABLED)
    return user


def authorize(requirement: Requirement) -> Caller:
    """Check the current caller against `requirement`; raise 401/403/503 or return it."""
    state = request_globals()
    if gates.pending():
        # identify() deferred its revocation check to the rate-limit stage and that stage
        # did not run for this request (a skipped path): check now.
        gates.resolve_pending_gate()
    error: ApiError | None = state.get("auth_error")
    if error is not None:
        raise error
    caller: Caller = state.get("caller") or ANONYMOUS
    if not caller.is_authenticated:
        raise Unauthorized(code=ErrorCode.AUTH_REQUIRED)
    if caller.kind == "api_key":
        if not requirement.accepts_api_keys:
            raise Forbidden(
                "This operation does not accept API keys.", code=ErrorCode.AUTH_FORBIDDEN
            )
        if not caller.has_scopes(requirement.scopes):
            challenge = f'{REALM}, error="insufficient_scope"'  # RFC 6750 section 3.1
            raise Forbidden(
                code=ErrorCode.AUTH_INSUFFICIENT_SCOPE,
                details={"required_scopes": sorted(requirement.scopes)},
                headers={"WWW-Authenticate": challenge},
            )
    if requirement.roles and not caller.has_role(*requirement.roles):
        raise Forbidden(
            code=ErrorCode.AUTH_FORBIDDEN, details={"required_roles": list(requirement.roles)}
        )
    if (
        current_request().method not in SAFE_METHODS
        and not requirement.allow_readonly
        and not caller.has_role(Role.USER)
    ):
        raise Forbidden("Read-only accounts cannot change data.", code=ErrorCode.AUTH_FORBIDDEN)
    if requirement.load_user:
        state.current_user = _load_user(caller)
    return caller


def require_auth(
    *,
    scopes: Iterable[str] = (),
    roles: Iterable[str] = (),
    allow_readonly: bool = False,
    load_user: bool = False,
) -> Callable[[F], F]:
    """Demand an authenticated caller.

    `scopes`: what an API key must hold (none named = API keys refused). `roles`: one
    of them is needed (admin implies user implies readonly). Unsafe methods also need
    the `user` role unless `allow_readonly`. `load_user` sets `g.current_user` from
    PostgreSQL and refuses disabled accounts.
    """
    requirement = Requirement(
        scopes=frozenset(scopes),
        roles=tuple(roles),
        allow_readonly=allow_readonly,
        load_user=load_user,
    )

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            authorize(requirement)
            return view(*args, **kwargs)

        setattr(wrapper, ATTR, requirement)
        return cast(F, wrapper)

    return decorate


def require_roles(
    *roles: str,
    scopes: Iterable[str] = (),
    allow_readonly: bool = False,
    load_user: bool = False,
) -> Callable[[F], F]:
    """`require_auth` with at least one of `roles`."""
    return require_auth(
        scopes=scopes, roles=roles, allow_readonly=allow_readonly, load_user=load_user
    )
