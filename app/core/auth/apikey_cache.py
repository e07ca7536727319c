"""The Redis side of API keys: a cache of resolved keys and a buffer of last-used times.

`identify()` resolves a key with one round trip: a Lua script reads the cache entry
and, for a live key, records the time in a Redis hash. A periodic task
(`sapi.auth.flush_api_key_last_used`) moves that hash into PostgreSQL, so using a key
never costs a database write.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Final, cast

from redis import Redis
from redis.exceptions import ResponseError

from app.core.errors import ErrorCode

CACHE_PREFIX: Final = "sapi:auth:apikey:"
LAST_USED_KEY: Final = "sapi:auth:apikey-last-used"
FLUSHING_PREFIX: Final = "sapi:auth:apikey-last-used:flushing:"
NEGATIVE_TTL: Final = 60
_NEGATIVE: Final = b"!"

# A positive entry is "<key id>\n<json>", so the script can find the id without cjson.
LOOKUP_LUA: Final = """
local v = redis.call('GET', KEYS[1])
if v then
  local nl = string.find(v, '\\n', 1, true)
  if nl then redis.call('HSET', KEYS[2], string.sub(v, 1, nl - 1), ARGV[1]) end
end
return v
"""
# Put a batch back after a failed flush, keeping the newer time per key.
MERGE_BACK_LUA: Final = """
local src = redis.call('HGETALL', KEYS[1])
for i = 1, #src, 2 do
  local cur = redis.call('HGET', KEYS[2], src[i])
  if (not cur) or tonumber(cur) < tonumber(src[i + 1]) then
    redis.call('HSET', KEYS[2], src[i], src[i + 1])
  end
end
redis.call('DEL', KEYS[1])
return #src / 2
"""


@dataclass(frozen=True, slots=True)
class ResolvedKey:
    """What a request needs to know about a live API key."""

    key_id: str
    user_id: str
    roles: frozenset[str]
    scopes: frozenset[str]
    expires_at: float | None


@dataclass(frozen=True, slots=True)
class RejectedKey:
    """A key that exists in no usable form; `code` says why."""

    code: ErrorCode


def _encode(entry: ResolvedKey | RejectedKey) -> bytes:
    if isinstance(entry, RejectedKey):
        return _NEGATIVE + entry.code.value.encode()
    body = {
        "u": entry.user_id,
        "r": sorted(entry.roles),
        "s": sorted(entry.scopes),
        "e": entry.expires_at,
    }
    return entry.key_id.encode() + b"\n" + json.dumps(body, separators=(",", ":")).encode()


def decode(raw: bytes) -> ResolvedKey | RejectedKey:
    """Parse a cache entry."""
    if raw.startswith(_NEGATIVE):
        return RejectedKey(ErrorCode(raw[1:].decode()))
    key_id, _, body = raw.partition(b"\n")
    data = json.loads(body)
    return ResolvedKey(
        key_id=key_id.decode(),
        user_id=data["u"],
        roles=frozenset(data["r"]),
        scopes=frozenset(data["s"]),
        expires_at=data["e"],
    )


class ApiKeyCache:
    """Cache entries keyed by the key's SHA-256 digest (never by the key itself)."""

    def __init__(self, redis: Redis, *, ttl: int) -> None:
        self._redis = redis
        self._ttl = ttl
        self._lookup = redis.register_script(LOOKUP_LUA)
        self._merge_back = redis.register_script(MERGE_BACK_LUA)

    def lookup(self, key_hash: str) -> ResolvedKey | RejectedKey | None:
        """The cached entry (recording last use of a live key), or None on a miss."""
        raw = self._lookup(keys=[CACHE_PREFIX + key_hash, LAST_USED_KEY], args=[time.time()])
        return None if raw is None else decode(bytes(raw))

    def store(self, key_hash: str, entry: ResolvedKey | RejectedKey) -> None:
        """Cache an entry; a live key is also marked used now."""
        ttl = NEGATIVE_TTL if isinstance(entry, RejectedKey) else self._ttl
        if isinstance(entry, ResolvedKey) and entry.expires_at is not None:
            ttl = max(1, min(ttl, int(entry.expires_at - time.time()) + 1))
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(CACHE_PREFIX + key_hash, _encode(entry), ex=ttl)
        if isinstance(entry, ResolvedKey):
            pipe.hset(LAST_USED_KEY, entry.key_id, str(time.time()))
        pipe.execute()

    def forget(self, key_hashes: list[str]) -> None:
        """Drop entries (revocation, owner disabled or roles changed)."""
        if key_hashes:
            self._redis.delete(*[CACHE_PREFIX + h for h in key_hashes])

    def take_last_used(self, batch_id: str) -> tuple[str, dict[str, float]]:
        """Atomically move the buffered last-used times aside and return them."""
        target = FLUSHING_PREFIX + batch_id
        try:
            self._redis.rename(LAST_USED_KEY, target)
        except ResponseError as exc:  # nothing buffered since the last flush
            if "no such key" in str(exc).lower():
                return target, {}
            raise
        raw = cast(dict[bytes, bytes], self._redis.hgetall(target))
        return target, {k.decode(): float(v) for k, v in raw.items()}

    def done(self, batch_key: str) -> None:
        """Forget a batch that reached the database."""
        self._redis.delete(batch_key)

    def put_back(self, batch_key: str) -> None:
        """Return a batch that could not be written, keeping newer times."""
        self._merge_back(keys=[batch_key, LAST_USED_KEY])
