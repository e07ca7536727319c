"""Requests per API version and caller, for `ApiVersion.status` (docs/architecture.md:
"live usage in CR status"; the operator reads it in sapi_operator/usage.py).

The request path never talks to Redis for this: `record()` adds one to an in-memory
count keyed by (version, caller), a dict increment well under a microsecond (one Redis
round trip per request is the pipeline's budget). A daemon thread per process
writes the counts every `USAGE_FLUSH_SECONDS` in one MULTI/EXEC round trip, per major:

* `sapi:usage:v<major>:<minute>`: INCRBY of the requests counted since the last flush;
* `sapi:usage-callers:v<major>:<minute>`: ZINCRBY per caller, members being the rate
  limiter's caller key (`user:<id>`, `api_key:<id>`, `anonymous`), never a credential.
  At most `MAX_CALLERS_PER_FLUSH` callers per major and flush; the rest are folded into
  the member `other`, so many distinct callers cannot grow Redis without bound.

Both expire after `USAGE_TTL_SECONDS`, a bit more than the hour the operator sums. Keys
are per major because an `ApiVersion` governs `/v{major}` whatever its minor.

Telemetry, approximate by design: counts land in the minute of the flush that writes
them (up to one interval late); a failed flush is logged and kept, merged into the next
one (bounded the same way), and dropped once older than the hour it would count in; a
flush whose EXEC succeeded but whose reply was lost is counted again; an increment
racing another thread's or the flush's swap may be lost (no lock). The thread
starts on a process's first request; a forked child (gunicorn worker) starts with empty
counts and its own thread, locks and connection (os.register_at_fork); a process
exiting normally flushes what it holds (atexit).
"""

from __future__ import annotations

import atexit
import heapq
import logging
import os
import threading
import time
import weakref
from typing import TYPE_CHECKING, Final

import redis
from redis.exceptions import RedisError

from app.auth.caller import Caller
from app.core.redis_client import build_client
from app.settings import Settings

if TYPE_CHECKING:  # Flask only as a type: the operator reads the keys without Flask
    from flask import Flask

log = logging.getLogger("structured_api.versioning.usage")

EXTENSION: Final = "api_usage"
USAGE_PREFIX: Final = "sapi:usage:"
CALLERS_PREFIX: Final = "sapi:usage-callers:"
#: Minute keys outlive the hour `requestsLastHour` sums, with margin (like shadow counters).
USAGE_TTL_SECONDS: Final = 3900
MAX_CALLERS_PER_FLUSH: Final = 100
OTHER: Final = "other"
ANONYMOUS: Final = "anonymous"
THREAD_NAME: Final = "usage-flusher"

#: (served version, caller kind, user or API-key id): cheap to build and hash per request.
CountKey = tuple[str, str, str | None]
#: major label (`v1`) -> caller key -> requests.
Folded = dict[str, dict[str, int]]

_LIVE: weakref.WeakSet[UsageCounter] = weakref.WeakSet()


def total_key(major: str, minute: int) -> str:
    """The per-minute request counter of one major (`v1`)."""
    return f"{USAGE_PREFIX}{major}:{minute}"


def callers_key(major: str, minute: int) -> str:
    """The per-minute sorted set of callers of one major (`v1`)."""
    return f"{CALLERS_PREFIX}{major}:{minute}"


def caller_name(kind: str, ident: str | None) -> str:
    """The caller's key as the rate limiter names it (`Caller.rate_limit_key`)."""
    if kind == "user" or kind == "api_key":
        return f"{kind}:{ident}"
    return ANONYMOUS


def fold(counts: dict[CountKey, int], *, limit: int = MAX_CALLERS_PER_FLUSH) -> Folded:
    """Group counts by major and keep the `limit` busiest callers, the rest as `other`."""
    out: Folded = {}
    for (version, kind, ident), n in counts.items():
        callers = out.setdefault("v" + version.split(".", 1)[0], {})
        name = caller_name(kind, ident)
        callers[name] = callers.get(name, 0) + n
    return {major: bound(callers, limit=limit) for major, callers in out.items()}


def bound(callers: dict[str, int], *, limit: int = MAX_CALLERS_PER_FLUSH) -> dict[str, int]:
    """At most `limit` named callers plus `other` holding the rest; totals unchanged."""
    named = {k: v for k, v in callers.items() if k != OTHER}
    if len(named) <= limit:
        return dict(callers)
    kept = dict(heapq.nlargest(limit, named.items(), key=lambda kv: kv[1]))
    kept[OTHER] = sum(callers.values()) - sum(kept.values())
    return kept


def merge(into: Folded, more: Folded) -> Folded:
    """Add `more` to `into` (both folded) and bound the result again."""
    out = {major: dict(callers) for major, callers in into.items()}
    for major, callers in more.items():
        target = out.setdefault(major, {})
        for name, n in callers.items():
            target[name] = target.get(name, 0) + n
    return {major: bound(callers) for major, callers in out.items()}


class UsageCounter:
    """One app's counts in one process and the thread flushing them."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.interval = settings.usage_flush_seconds
        self._counts: dict[CountKey, int] = {}
        self._flush_lock = threading.Lock()
        self._start_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: redis.Redis | None = None
        self._carry: Folded = {}
        self._carry_since: float | None = None
        _LIVE.add(self)

    def pending(self) -> dict[CountKey, int]:
        """A copy of the counts not flushed yet (tests, debugging)."""
        return self._counts.copy()

    def flush(self, *, now: float | None = None, final: bool = False) -> bool:
        """Write what was counted in one round trip; False (counts kept) if Redis failed.

        `final` (process exit): nothing is kept and a failure is only logged at DEBUG,
        since the log stream may already be closed then (pytest's capture, for one).
        """
        with self._flush_lock:
            batch, self._counts = self._counts, {}
            # A request that loaded the old dict just before the swap may still add to it:
            # `copy()` runs in C under the GIL (no "changed size during iteration"), and
            # such an increment is lost, which telemetry can afford (see the docstring).
            batch = batch.copy()
            folded = merge(self._carry, fold(batch)) if self._carry else fold(batch)
            if not folded:
                return True
            when = time.time() if now is None else now
            try:
                self._write(folded, minute=int(when // 60))
            except RedisError as exc:
                if final:
                    log.debug("API usage flush at exit failed (%s)", type(exc).__name__)
                else:
                    self._keep(folded, exc)
                return False
            self._carry, self._carry_since = {}, None
            return True

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's flusher thread (tests, shutdown); counts stay pending."""
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _write(self, folded: Folded, *, minute: int) -> None:
        if self._client is None:
            url = self.settings.rate_limit_redis_url or self.settings.redis_url
            # The operator reads the limiter's Redis (sapi_operator/runtime.py): write there.
            self._client = build_client(self.settings.model_copy(update={"redis_url": url}))
        pipe = self._client.pipeline(transaction=True)
        for major, callers in folded.items():
            total, members = total_key(major, minute), callers_key(major, minute)
            pipe.incrby(total, sum(callers.values()))
            pipe.expire(total, USAGE_TTL_SECONDS)
            for name, n in callers.items():
                pipe.zincrby(members, n, name)
            pipe.expire(members, USAGE_TTL_SECONDS)
        pipe.execute()

    def _keep(self, folded: Folded, exc: RedisError) -> None:
        now = time.monotonic()
        since = self._carry_since if self._carry_since is not None else now
        if now - since > USAGE_TTL_SECONDS:
            dropped = sum(sum(c.values()) for c in folded.values())
            log.warning(
                "API usage flush failed for an hour (%s); dropped %d requests",
                type(exc).__name__,
                dropped,
            )
            self._carry, self._carry_since = {}, None
            return
        log.warning("API usage flush failed (%s); retrying next flush", type(exc).__name__)
        self._carry, self._carry_since = folded, since

    def _start(self) -> None:
        with self._start_lock:
            if self._thread is not None:
                return
            args = (weakref.ref(self), self._stop, self.interval)
            thread = threading.Thread(target=_run, args=args, name=THREAD_NAME, daemon=True)
            thread.start()
            self._thread = thread

    def _after_fork(self) -> None:
        # The parent's counts are the parent's to flush; its lock may have been held at
        # fork and its thread and connections do not exist here (os.register_at_fork).
        self._counts, self._carry, self._carry_since = {}, {}, None
        self._flush_lock, self._start_lock = threading.Lock(), threading.Lock()
        self._stop = threading.Event()
        self._thread, self._client = None, None


def _run(ref: weakref.ref[UsageCounter], stop: threading.Event, interval: float) -> None:
    # A weak reference: the thread ends once its app (and counter) is gone, e.g. the
    # many short-lived apps of a test session, instead of keeping them alive.
    while not stop.wait(interval):
        counter = ref()
        if counter is None:
            return
        try:
            counter.flush()
        except Exception:  # the thread must outlive a bug in one flush
            log.exception("API usage flush failed")
        del counter


def _after_fork_in_child() -> None:
    for counter in list(_LIVE):
        counter._after_fork()


def flush_all() -> None:
    """Flush every counter of this process (atexit, best effort: Redis may be gone)."""
    for counter in list(_LIVE):
        try:
            counter.flush(final=True)
        except Exception as exc:
            log.debug("API usage flush at exit failed (%s)", type(exc).__name__)


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush_all)


def counter_of(app: Flask) -> UsageCounter:
    """The app's counter, created on first use (nothing starts in `create_app`)."""
    counter: UsageCounter | None = app.extensions.get(EXTENSION)
    if counter is None:
        counter = app.extensions.setdefault(EXTENSION, UsageCounter(app.extensions["settings"]))
    return counter


def record(app: Flask, version: str, caller: Caller | None) -> None:
    """Count one request to `version` by `caller` (the versioning hook calls this).

    The hot path, inlined on purpose: one dict increment, no lock (an uncontended
    `threading.Lock` alone cost more than the rest here). Two threads of one process
    incrementing the same key across a GIL switch can lose one count: accepted.
    """
    counter: UsageCounter | None = app.extensions.get(EXTENSION)
    if counter is None or counter._thread is None:
        counter = counter_of(app)
        counter._start()
    if caller is None:
        key: CountKey = (version, ANONYMOUS, None)
    else:
        key = (version, caller.kind, caller.key_id or caller.subject)
    counts = counter._counts
    counts[key] = counts.get(key, 0) + 1
