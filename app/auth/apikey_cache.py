"""The Redis side of API keys: a cache of resolved keys and a buffer of last-used times.

`identify()` resolves a key with one round trip: a Lua script reads the cache entry
and, for a live key, records the time in a Redis hash. A periodic task
(`sapi.auth.flush_api_key_last_used`) moves that hash into PostgreSQL, so using a key
never costs a database write.

Revocation must win against a concurrent cache fill (a request that read the key's row
just before the revoke committed, then writes it to the cache). Each key has a fence
key beside its entry: a revoke sets it to a tombstone *before* its commit, a change of
the owner (disabled, roles) to a fresh value *after* its commit, and both drop the
entry. The lookup script reads the fence in the same call (no extra round trip): a
tombstone refuses the key in every process. A miss hands the fence value it saw to the
filler, whose write is a compare-and-set: refused under a tombstone, retried from the
database when the fence moved. The entry lives only in Redis (no per-process copy),
so every gunicorn worker sees a tombstone as soon as it is written.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, cast

from redis import Redis
from redis.exceptions import ResponseError

from app.core.errors import ErrorCode

CACHE_PREFIX: Final = "sapi:auth:apikey:"
LAST_USED_KEY: Final = "sapi:auth:apikey-last-used"
FLUSHING_PREFIX: Final = "sapi:auth:apikey-last-used:flushing:"
FENCE_PREFIX: Final = "sapi:auth:apikey-fence:"
NEGATIVE_TTL: Final = 60
#: Fence value of a revoked key (the tombstone); any other value is a change marker.
TOMBSTONE: Final = "r"
#: A fill whose database read took longer than this is served but not cached: the fence
#: it was checked against lives `ttl + NEGATIVE_TTL` (>= 65 s), far longer.
MAX_FILL_SECONDS: Final = 10.0
#: Fills attempted per request when the fence keeps moving (then served uncached).
MAX_FILL_ATTEMPTS: Final = 2
_NEGATIVE: Final = b"!"
_MISS: Final = b"?"

# A positive entry is "<key id>\n<json>", so the script can find the id without cjson.
# KEYS: entry, last-used hash, fence. A tombstone answers as a revoked negative entry
# (and drops any entry a writer unaware of fences left); a miss answers "?<fence>".
LOOKUP_LUA: Final = """
local f = redis.call('GET', KEYS[3])
if f == 'r' then
  redis.call('DEL', KEYS[1])
  return '!AUTH_TOKEN_REVOKED'
end
local v = redis.call('GET', KEYS[1])
if not v then return '?' .. (f or '') end
local nl = string.find(v, '\\n', 1, true)
if nl then redis.call('HSET', KEYS[2], string.sub(v, 1, nl - 1), ARGV[1]) end
return v
"""
# Compare-and-set fill. KEYS: entry, last-used hash, fence. ARGV: entry, ttl, the fence
# value the miss saw, now, key id ('' for a negative entry). Answers 'ok', 'r' (revoked
# meanwhile) or 'c<fence>' (changed meanwhile: the row read may predate the change).
STORE_LUA: Final = """
local f = redis.call('GET', KEYS[3]) or ''
if f == 'r' then return 'r' end
if f ~= ARGV[3] then return 'c' .. f end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[2], ARGV[5], ARGV[4]) end
return 'ok'
"""
# KEYS: fence1, entry1, fence2, entry2, ... ARGV: marker, ttl. A change marker never
# replaces a tombstone: a revoke in flight must keep refusing fills until it commits.
FENCE_LUA: Final = """
for i = 1, #KEYS, 2 do
  if ARGV[1] == 'r' or redis.call('GET', KEYS[i]) ~= 'r' then
    redis.call('SET', KEYS[i], ARGV[1], 'EX', ARGV[2])
  end
  redis.call('DEL', KEYS[i + 1])
end
return #KEYS / 2
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


@dataclass(frozen=True, slots=True)
class Miss:
    """No cache entry; `fence` is the fence value seen, which a fill must still find."""

    fence: str


REVOKED: Final = RejectedKey(ErrorCode.AUTH_TOKEN_REVOKED)
#: Resolves a key digest from PostgreSQL on a cache miss (app.auth.api_keys).
KeyResolver = Callable[[str], ResolvedKey | RejectedKey]


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
        # At least the entry lifetime: an entry written by a process that does not know
        # fences (a rolling deploy) is refused by the lookup until it has expired.
        self.fence_ttl = ttl + NEGATIVE_TTL
        self._lookup = redis.register_script(LOOKUP_LUA)
        self._store = redis.register_script(STORE_LUA)
        self._fence = redis.register_script(FENCE_LUA)
        self._merge_back = redis.register_script(MERGE_BACK_LUA)

    def lookup(self, key_hash: str) -> ResolvedKey | RejectedKey | Miss:
        """The cached entry (recording last use of a live key), or a `Miss`."""
        raw = bytes(
            self._lookup(
                keys=[CACHE_PREFIX + key_hash, LAST_USED_KEY, FENCE_PREFIX + key_hash],
                args=[time.time()],
            )
        )
        return Miss(raw[1:].decode()) if raw.startswith(_MISS) else decode(raw)

    def fill(self, key_hash: str, resolve: KeyResolver, miss: Miss) -> ResolvedKey | RejectedKey:
        """Resolve a missed key from the database and cache it unless a fence moved."""
        fence = miss.fence
        entry: ResolvedKey | RejectedKey = REVOKED
        for _ in range(MAX_FILL_ATTEMPTS):
            started = time.monotonic()
            entry = resolve(key_hash)
            if time.monotonic() - started > MAX_FILL_SECONDS:
                return entry  # too old to vouch for against the fence: not cached
            outcome = self.store(key_hash, entry, fence=fence)
            if outcome is None:
                return entry
            if outcome == TOMBSTONE:
                return REVOKED  # revoked while we read: revoke wins
            fence = outcome  # the owner changed while we read: read again
        return entry

    def store(self, key_hash: str, entry: ResolvedKey | RejectedKey, *, fence: str) -> str | None:
        """Cache `entry` if the fence still holds `fence`; else return the fence's value."""
        ttl = NEGATIVE_TTL if isinstance(entry, RejectedKey) else self._ttl
        key_id = ""
        if isinstance(entry, ResolvedKey):
            key_id = entry.key_id
            if entry.expires_at is not None:
                ttl = max(1, min(ttl, int(entry.expires_at - time.time()) + 1))
        answer = bytes(
            self._store(
                keys=[CACHE_PREFIX + key_hash, LAST_USED_KEY, FENCE_PREFIX + key_hash],
                args=[_encode(entry), ttl, fence, time.time(), key_id],
            )
        ).decode()
        if answer == "ok":
            return None
        return TOMBSTONE if answer == TOMBSTONE else answer[1:]

    def tombstone(self, key_hash: str) -> None:
        """Refuse the key everywhere from now on (call before the revoke commits)."""
        self._set_fence([key_hash], TOMBSTONE)

    def forget(self, key_hashes: list[str]) -> None:
        """Drop entries and fence off fills that read the database before now.

        Call after the commit of the change (owner disabled, roles changed): a fill
        whose row predates the commit finds the fence moved and reads again.
        """
        self._set_fence(key_hashes, "c" + secrets.token_hex(8))

    def _set_fence(self, key_hashes: list[str], marker: str) -> None:
        if not key_hashes:
            return
        keys = [k for h in key_hashes for k in (FENCE_PREFIX + h, CACHE_PREFIX + h)]
        self._fence(keys=keys, args=[marker, self.fence_ttl])

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
