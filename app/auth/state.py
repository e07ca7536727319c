"""The per-app auth state kept in `app.extensions["auth"]` and handed to services."""

from __future__ import annotations

from collections.abc import MutableMapping
from functools import cached_property
from typing import Any, Final

from redis import Redis

from app.auth.apikey_cache import ApiKeyCache, KeyResolver
from app.auth.keys import KeyRing
from app.auth.opaque import successor_key
from app.auth.passwords import Passwords
from app.auth.revocation import MIRROR_EXTENSION, Denylist
from app.auth.revocation_mirror import RevocationMirror
from app.core.request_context import current_application
from app.hotstore.client import hot_client
from app.settings import Settings

EXTENSION: Final = "auth"
REDIS_EXTENSION: Final = "redis"  # app.core.redis.EXTENSION


class AuthState:
    """Keys, hasher, Redis and settings: everything auth services need, built once.

    The Redis client is looked up on first use: `identify` is installed early in the
    factory (pipeline order), before the Redis extension exists.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        keyring: KeyRing,
        passwords: Passwords,
        resolve_api_key: KeyResolver,
        extensions: MutableMapping[str, Any],
    ) -> None:
        self.settings = settings
        self.keyring = keyring
        self.passwords = passwords
        self.resolve_api_key = resolve_api_key
        self._extensions = extensions

    @property
    def app_extensions(self) -> MutableMapping[str, Any]:
        """The app's `extensions` (live: later extensions show up here)."""
        return self._extensions

    @cached_property
    def redis(self) -> Redis:
        """The app's shared Redis client."""
        client: Redis = self._extensions[REDIS_EXTENSION]
        return client

    @cached_property
    def denylist(self) -> Denylist:
        """Where revocations are written and read (the Cluster when one is configured)."""
        s = self.settings
        cluster = hot_client(s, timeout=s.redis_socket_timeout) if s.cluster_seeds() else None
        until = s.revocation_legacy_until
        return Denylist(
            announce=self.redis,
            cluster=cluster,
            legacy_until=until.timestamp() if until is not None else None,
        )

    @cached_property
    def mirror(self) -> RevocationMirror | None:
        """This process's copy of the revocation denylist (None: disabled)."""
        if not self.settings.revocation_mirror_enabled:
            return None
        found: RevocationMirror | None = self._extensions.get(MIRROR_EXTENSION)
        if found is None:
            found = self._extensions[MIRROR_EXTENSION] = RevocationMirror(
                self.settings.redis_url,
                timeout=self.settings.redis_connect_timeout,
                sentinel_password=self.settings.sentinel_password(),
                cluster=self.denylist.cluster,
            )
        return found

    @cached_property
    def api_keys(self) -> ApiKeyCache:
        """The API-key cache and last-used buffer."""
        return ApiKeyCache(self.redis, ttl=self.settings.api_key_cache_ttl)

    @cached_property
    def successor_key(self) -> bytes:
        """HMAC key deriving refresh-token successors (app/auth/opaque.py)."""
        return successor_key(self.settings.secret())

    @property
    def leeway(self) -> int:
        """Clock skew tolerated on token times, seconds."""
        return self.settings.jwt_leeway_seconds


def auth_state() -> AuthState:
    """The current app's auth state."""
    state: AuthState = current_application().extensions[EXTENSION]
    return state
