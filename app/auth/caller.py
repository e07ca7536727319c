"""Who is calling: the `Caller` set by `identify()`, roles and the API-key scope catalogue."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum
from typing import Final, Literal

CallerKind = Literal["user", "api_key", "anonymous"]


class Role(StrEnum):
    """Roles a user holds; `admin` implies `user`, which implies `readonly`."""

    ADMIN = "admin"
    USER = "user"
    READONLY = "readonly"


ROLES: Final = frozenset(r.value for r in Role)
# A role grants itself and everything below it, so `require_roles("user")` admits admins.
IMPLIED: Final[dict[str, frozenset[str]]] = {
    Role.ADMIN: frozenset({Role.ADMIN, Role.USER, Role.READONLY}),
    Role.USER: frozenset({Role.USER, Role.READONLY}),
    Role.READONLY: frozenset({Role.READONLY}),
}
WRITE_ROLES: Final = (Role.USER.value,)
DEFAULT_ROLES: Final = (Role.USER.value,)

# Scopes an API key may hold. A route opts in to API keys by naming the scopes it needs
# (`require_auth(scopes=...)`); routes that name none refuse API keys. Add new scopes here.
SCOPES: Final[dict[str, str]] = {
    "profile:read": "Read the owner's profile (`GET /v1/auth/me`).",
    "ai:generate": "Generate text (`POST /v1/ai/generate`, `/openai/v1/...`, "
    "`/anthropic/v1/messages`).",
    "ai:jobs": "Create, read and cancel background AI jobs.",
    "ai:history": "Read the owner's AI request history.",
    "limits:read": "Read the caller's effective limits.",
    "admin:users": "List users, disable them and change roles (owner must be admin).",
    "admin:config": "Read and change runtime configuration (owner must be admin).",
}
ADMIN_SCOPE_PREFIX: Final = "admin:"
ALL_SCOPES: Final = "*"


@functools.lru_cache(maxsize=256)
def effective_roles(roles: frozenset[str]) -> frozenset[str]:
    """The roles `roles` grant, hierarchy included (cached: a few role sets, every request)."""
    out: set[str] = set()
    for role in roles:
        out |= IMPLIED.get(role, frozenset())
    return frozenset(out)


@dataclass(frozen=True, slots=True)
class Caller:
    """The authenticated (or anonymous) principal of the current request.

    Users authenticated by an access token hold every scope (`"*"`); scopes only narrow
    what an API key may do.
    """

    kind: CallerKind
    subject: str | None = None
    roles: frozenset[str] = frozenset()
    scopes: frozenset[str] = frozenset()
    key_id: str | None = None
    token_id: str | None = None
    session_id: str | None = None
    expires_at: int | None = None

    @property
    def is_authenticated(self) -> bool:
        """True for users and API keys."""
        return self.kind != "anonymous"

    def has_role(self, *wanted: str) -> bool:
        """True when the caller holds (or is granted by hierarchy) one of `wanted`."""
        return bool(effective_roles(self.roles) & set(wanted))

    def has_scopes(self, wanted: frozenset[str]) -> bool:
        """True when every scope in `wanted` is held."""
        return ALL_SCOPES in self.scopes or wanted <= self.scopes

    @property
    def rate_limit_key(self) -> str | None:
        """A stable key for per-caller limits (`user:<id>` / `api_key:<id>`), or None."""
        if self.kind == "user":
            return f"user:{self.subject}"
        if self.kind == "api_key":
            return f"api_key:{self.key_id}"
        return None


ANONYMOUS: Final = Caller(kind="anonymous")
