"""Leases: a busy caller's permits taken from Redis in small batches, handed out locally.

Hot-path speed trick (docs/performance.md): the one Redis round trip per request is most
of what the limiter costs. For a caller busy enough to matter, `LeaseBook` asks
`lease.lua` for k permits of every limit of the request at once (sized by the caller's
rate in this process and the limits' room) and lets the next k - 1 requests of that
caller in this process through without Redis, for at most `ttl` seconds. Quiet callers,
small limits and nearly spent budgets keep one round trip per request (`want` returns 1).

Exact across processes: the permits are taken from the shared GCRA state before any is
used, checked as if used at once and charged as if used at the end of the lease
(lease.lua), so every process together never admits more than GCRA allows. What a lease
costs is under-admission, bounded in docs/rate-limiting.md ("Leases"): permits a process
took and did not use before the lease expired, and the lease's `ttl` of refill.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Final, cast

from app.ratelimit.model import CompiledLimit
from app.ratelimit.store import LimiterStore

SCRIPT: Final = resources.files("app.ratelimit").joinpath("lease.lua").read_text()
SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()

#: A lease never holds more than this many permits ...
MAX_LEASE: Final = 64
#: ... nor more than 1/QUANTITY_SHARE of a limit's quantity (limits under 2x this never
#: lease: a test's "exactly 50 per hour" stays one round trip per request) ...
QUANTITY_SHARE: Final = 100
#: ... nor more than 1/ROOM_SHARE of the room the limit had at the last grant, so leases
#: shrink to nothing as a budget runs out.
ROOM_SHARE: Final = 8
#: Requests of one caller in one process within one `ttl` before it gets leases.
HOT_REQUESTS: Final = 4
#: Rate trackers kept before idle ones are dropped (one per caller and request kind).
MAX_TRACKED: Final = 4096

GrantRow = tuple[int, int, int]  # remaining units, ms until full, ms until one conforms


@dataclass(slots=True)
class Lease:
    """Permits of one caller and request kind this process may still hand out."""

    left: int
    deadline: float  # monotonic; taken from before the request was sent
    granted_at: float
    rows: list[GrantRow]  # per limit, as Redis answered the grant


@dataclass(slots=True)
class _Tracker:
    """Requests seen in the current period of `ttl` seconds, and in the last one."""

    since: float
    count: int = 0
    last: int = 0
    room: int | None = None  # fewest units left over the limits at the last grant


class LeaseBook:
    """Every live lease and rate tracker of this process, by the request's limit keys."""

    def __init__(
        self, store: LimiterStore, *, ttl: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.store = store
        self.ttl = ttl
        self._ttl_ms = max(1, round(ttl * 1000))
        self._clock = clock
        self._leases: dict[tuple[str, ...], Lease] = {}
        self._trackers: dict[tuple[str, ...], _Tracker] = {}
        self._granting: set[tuple[str, ...]] = set()  # one grant in flight per key
        self._lock = threading.Lock()

    def take(self, key: tuple[str, ...]) -> Lease | None:
        """One permit from a live lease of `key` (None: none left, ask Redis)."""
        with self._lock:
            lease = self._leases.get(key)
            if lease is None:
                return None
            if lease.left <= 0 or self._clock() >= lease.deadline:
                del self._leases[key]  # spent or expired: what is left is never used
                return None
            lease.left -= 1
            return lease

    def want(self, key: tuple[str, ...], limits: Sequence[CompiledLimit]) -> int:
        """How many permits to ask for: 1 (no lease) unless the caller is hot here.

        More than 1 reserves the key's one grant in flight: call `grant` next. Other
        threads meanwhile get 1 (one round trip each), so a process never holds more
        than one lease per key and never drops one lease's permits for another's.
        """
        now = self._clock()
        with self._lock:
            tracker = self._trackers.get(key)
            if tracker is None:
                if len(self._trackers) >= MAX_TRACKED:
                    self._prune(now)
                tracker = self._trackers[key] = _Tracker(since=now)
            elapsed = now - tracker.since
            if elapsed >= self.ttl:
                # A period ended; a gap of more than one period means nothing in the last.
                tracker.last = tracker.count if elapsed < 2 * self.ttl else 0
                tracker.count, tracker.since = 0, now
            tracker.count += 1
            busy = max(tracker.last, tracker.count)
            room = tracker.room
        if busy < HOT_REQUESTS:
            return 1
        # Half of what the last period's rate would use in a whole lease: it is normally
        # spent in half its time, so a slowing caller rarely lets one expire unused.
        size = min(MAX_LEASE, busy // 2, *(lim.quantity // QUANTITY_SHARE for lim in limits))
        if room is not None:
            size = min(size, room // ROOM_SHARE)
        if size <= 1:
            return 1
        with self._lock:
            if key in self._granting:
                return 1
            self._granting.add(key)
        return size

    def grant(
        self,
        key: tuple[str, ...],
        keys: Sequence[str],
        limits: Sequence[CompiledLimit],
        want: int,
    ) -> tuple[int, Lease]:
        """Ask Redis for `want` permits (after `want`); keep the rest as a lease.

        May raise StoreUnavailable.
        """
        sent = self._clock()
        args: list[float | int] = [len(keys), want, self._ttl_ms]
        for lim in limits:
            args.extend((lim.interval_ms, lim.horizon_ms))
        try:
            raw = self.store.run_script(SCRIPT, SCRIPT_SHA, keys, args)
        finally:
            with self._lock:
                self._granting.discard(key)
        granted_raw, rows_raw = cast(tuple[int, list[list[int]]], raw)
        granted = int(granted_raw)
        rows = [(int(r[0]), int(r[1]), int(r[2])) for r in rows_raw]
        lease = Lease(
            left=max(0, granted - 1), deadline=sent + self.ttl, granted_at=sent, rows=rows
        )
        with self._lock:
            tracker = self._trackers.get(key)
            if tracker is not None:
                tracker.room = min((r[0] for r in rows), default=0)
            if lease.left > 0:
                self._leases[key] = lease
        return granted, lease

    def reset_ms(self, lease: Lease, ms: int) -> int:
        """`ms` (until full, as Redis answered the grant) counted down to now."""
        return max(0, ms - math.floor((self._clock() - lease.granted_at) * 1000))

    def _prune(self, now: float) -> None:
        stale = [k for k, t in self._trackers.items() if now - t.since >= 2 * self.ttl]
        for k in stale:
            del self._trackers[k]
        if len(self._trackers) >= MAX_TRACKED:  # all busy: start over rather than grow
            self._trackers.clear()
        for k in [k for k, lease in self._leases.items() if now >= lease.deadline]:
            del self._leases[k]
