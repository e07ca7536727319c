"""A cap on the generations one caller runs at once, counted across processes and replicas.

    slot = acquire(store, "user:42", limit=4, lease_seconds=385.0)   # RateLimited (429)
    try:
        ...                                                          # the generation
    finally:
        slot.release()

Each running `POST /v1/ai/generate` (JSON or streamed) holds a slot: a member of the
Redis sorted set `sapi:ai:running:<owner>` scored with the expiry of its lease, in Redis
server time (one clock for every host, as in app/ratelimit/gcra.lua). Taking one is
one script, atomic across replicas: drop expired members, count the rest, add one if
under the limit. Releasing removes the member; a stream does it in its `finally`
(finished, failed, cut at its deadline, or the client gone).

A process killed before its `finally` (SIGKILL, the OOM killer, a lost node) cannot
release: its slots count until their lease runs out. The lease is the longest a
generation may run (`lease_seconds`), so a slot is never dropped while its call may still
run, and never held much longer than that by a dead one.

Redis unreachable (or the limiter's store in its cooldown after a failure): the call runs
without the cap, with the `RATE_LIMITER_DEGRADED` warning, as the default rate limit and
the provider limits do (fail open, docs/rate-limiting.md "Failure modes").
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Protocol, cast

from app.core.errors import ErrorCode, RateLimited
from app.core.warnings import warn
from app.hotstore.commands import Command
from app.ratelimit.stage import DEGRADED_WARNING
from app.ratelimit.store import StoreUnavailable
from app.settings import Settings

log = logging.getLogger("structured_api.ai")

PREFIX: Final = "sapi:ai:running:"
#: A slot frees when one of the caller's generations ends, which cannot be predicted:
#: retrying after a second costs one script call.
RETRY_AFTER_SECONDS: Final = 1
#: Added to the longest a generation may run, for the last read and the bookkeeping after.
LEASE_MARGIN_SECONDS: Final = 30.0

# KEYS[1] the caller's set; ARGV[1] limit, ARGV[2] lease in ms, ARGV[3] slot id.
# Returns {1, running} when the slot is held, {0, running} when the caller is at its limit.
# The ZSCORE check makes a resent call (its first reply lost with the connection,
# `ThreadCommands` in app/hotstore/commands.py) find its own slot instead of counting it twice.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
  return {1, redis.call('ZCARD', KEYS[1])}
end
local running = redis.call('ZCARD', KEYS[1])
if running >= tonumber(ARGV[1]) then
  return {0, running}
end
redis.call('ZADD', KEYS[1], now + lease, ARGV[3])
if redis.call('PTTL', KEYS[1]) < lease then
  redis.call('PEXPIRE', KEYS[1], lease)
end
return {1, running + 1}
"""
_RELEASE: Final = "return redis.call('ZREM', KEYS[1], ARGV[1])"
# Redis names scripts by SHA-1 (EVALSHA).
_ACQUIRE_SHA: Final = hashlib.sha1(_ACQUIRE.encode()).hexdigest()
_RELEASE_SHA: Final = hashlib.sha1(_RELEASE.encode()).hexdigest()


class Store(Protocol):
    """The part of `LimiterStore` used here."""

    def run_script(
        self, source: str, sha: str, keys: Sequence[str], args: Sequence[str | int | float]
    ) -> object: ...


_tag: tuple[int, str] = (0, "")
_counter = itertools.count()


def _member() -> str:
    """A slot id unique across processes and replicas: a random tag per process (made
    again after a fork) and a counter, cheaper than a uuid4 (no `os.urandom` per call)."""
    global _tag
    pid = os.getpid()
    if _tag[0] != pid:
        _tag = (pid, secrets.token_hex(8))
    return f"{_tag[1]}-{next(_counter)}"


def lease_seconds(settings: Settings) -> float:
    """How long an unreleased slot counts: a stream opens within AI_REQUEST_DEADLINE and
    ends by AI_STREAM_MAX_SECONDS plus one read (at most AI_REQUEST_DEADLINE), a JSON call
    within AI_REQUEST_DEADLINE; plus a margin."""
    return settings.ai_request_deadline + settings.ai_stream_max_seconds + LEASE_MARGIN_SECONDS


@dataclass
class Slot:
    """A held slot, or none (no cap, or Redis unreachable); `release()` may be called twice."""

    store: Store | None = None
    key: str = ""
    member: str = ""
    #: The slot lives on the Redis node the AI history journal writes to (no Cluster, no
    #: separate limiter Redis): its release can share the history push's round trip.
    beside_journal: bool = False

    def release_command(self) -> Command | None:
        """The `ZREM` giving the slot back, to send in the history push's pipeline
        (app/ai/history/queue.py `submit`); None when it must go through `release()`."""
        if self.store is None or not self.beside_journal:
            return None
        return ("ZREM", self.key, self.member)

    def released(self) -> None:
        """The `release_command()` was sent: nothing is left to give back."""
        self.store = None

    def release(self) -> None:
        """Give the slot back (a Redis failure leaves it to expire with its lease)."""
        store, self.store = self.store, None
        if store is None:
            return
        try:
            store.run_script(_RELEASE, _RELEASE_SHA, [self.key], [self.member])
        except StoreUnavailable:
            log.warning("AI concurrency slot not released: Redis unavailable; its lease ends it")


def acquire(
    store: Store | None,
    owner: str,
    *,
    limit: int,
    lease_seconds: float,
    beside_journal: bool = False,
) -> Slot:
    """A slot among `owner`'s `limit`; 429 `RATE_CONCURRENCY_LIMIT` when all are taken."""
    if limit <= 0 or store is None:
        return Slot()
    key, member = PREFIX + owner, _member()
    lease_ms = max(1, round(lease_seconds * 1000))
    try:
        raw = store.run_script(_ACQUIRE, _ACQUIRE_SHA, [key], [limit, lease_ms, member])
    except StoreUnavailable:
        warn(DEGRADED_WARNING, "The concurrency cap could not be checked; served without it.")
        return Slot()
    held, running = (int(v) for v in cast(list[int], raw))
    if not held:
        raise RateLimited(
            f"{running} generations of this caller are running; at most {limit} may run at once.",
            code=ErrorCode.RATE_CONCURRENCY_LIMIT,
            retry_after=RETRY_AFTER_SECONDS,
            details={"limit": limit, "running": running, "scope": "caller"},
        )
    return Slot(store, key, member, beside_journal)
