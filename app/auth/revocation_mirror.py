"""A process-local copy of the revocation denylist, kept fresh by Redis pub/sub.

Hot-path speed trick (docs/auth.md "Revocation mirror", docs/performance.md): reading
the denylist in Redis is a round trip per authenticated request. Each process instead
keeps the denylist's few entries in memory: a thread subscribes to `CHANNEL` (every
write in app/auth/revocation.py publishes its key, value and TTL in the same MULTI),
then loads the entries with SCAN, then applies each message as it arrives.

The bound, and failing closed: the thread sends a PING on its subscription every
`PING_EVERY` seconds. Redis answers in order, so when the PONG of a PING sent at time s
arrives, every revocation published before s is in the mirror. `values` answers only
while that s is less than `STALE_AFTER` seconds old; otherwise (not loaded yet, Redis
unreachable, a stalled subscription) it returns None and the caller reads Redis for the
request, which fails closed when Redis cannot answer (app/auth/identify.py). So a
revocation takes effect everywhere within `STALE_AFTER` seconds at worst, usually within
a pub/sub delivery (about a millisecond here), and at once in the process that wrote it.

With a Redis Cluster the entries live on the Cluster and the channel stays on REDIS_URL
(`Denylist` in revocation.py announces each entry after the Cluster took it), so the same
order holds: subscribed on REDIS_URL first, loaded (from both) second.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, Final

import redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisClusterException, RedisError
from redis.retry import Retry

from app.auth.revocation import CHANNEL, PREFIXES, parse_message
from app.hotstore.client import HotClient
from app.settings.redis_url import connect

log = logging.getLogger("structured_api.auth")

#: Seconds between PINGs on the subscription.
PING_EVERY: Final = 0.25
#: The mirror is trusted while its last answered PING was sent less than this ago.
STALE_AFTER: Final = 1.0
_PING_PREFIX: Final = b"mirror:"
_RETRY_SECONDS: Final = 0.5

Entry = tuple[bytes, float]  # value, monotonic expiry (inf: none)


class RevocationMirror:
    """The denylist entries of one Redis, in memory, and how fresh they are."""

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        sentinel_password: str | None = None,
        cluster: HotClient | None = None,
    ) -> None:
        self._url = url
        self._cluster = cluster  # where the entries live when not on `url` (Denylist)
        self._sentinel_password = sentinel_password
        self._timeout = timeout
        self._entries: dict[str, Entry] = {}
        self._fresh_at = -math.inf  # send time of the last PING answered after the load
        self._pid = -1
        self._start_lock = threading.Lock()
        self._stop = threading.Event()

    # -- the request path ---------------------------------------------------------------

    def values(self, keys: Sequence[str]) -> list[bytes | None] | None:
        """The keys' values, as an MGET would answer, or None when not trustworthy now."""
        if self._pid != os.getpid():
            self._start()
        now = time.monotonic()
        if now - self._fresh_at > STALE_AFTER:
            return None
        entries = self._entries
        out: list[bytes | None] = []
        for key in keys:
            entry = entries.get(key)
            out.append(entry[0] if entry is not None and entry[1] > now else None)
        return out

    def note(self, key: str, value: bytes, ttl_ms: int) -> None:
        """Apply a write made by this process at once (its own requests see it next)."""
        self._entries[key] = (value, time.monotonic() + ttl_ms / 1000)

    def stop(self) -> None:
        """End the thread (tests; a process exits without it)."""
        self._stop.set()

    @property
    def trusted(self) -> bool:
        """True while `values` answers from memory."""
        return time.monotonic() - self._fresh_at <= STALE_AFTER

    # -- the thread ---------------------------------------------------------------------

    def _start(self) -> None:
        with self._start_lock:
            if self._pid == os.getpid():
                return
            # A forked child inherits the parent's entries but not its thread.
            self._pid = os.getpid()
            self._fresh_at = -math.inf
            self._stop.clear()
            threading.Thread(target=self._run, name="revocation-mirror", daemon=True).start()

    def _run(self) -> None:
        while not self._stop.is_set():
            client = connect(  # redis+sentinel:// URLs follow the current master
                self._url,
                sentinel_password=self._sentinel_password,
                socket_connect_timeout=self._timeout,
                socket_timeout=max(2.0, STALE_AFTER * 2),
                retry=Retry(NoBackoff(), 0),  # this loop owns retries
            )
            try:
                self._follow(client)
            except (RedisError, RedisClusterException) as exc:
                if self._fresh_at > -math.inf:
                    log.warning("revocation mirror: Redis unavailable (%s)", type(exc).__name__)
            finally:
                self._fresh_at = -math.inf  # not trusted until loaded again
                with contextlib.suppress(RedisError):
                    client.close()
            self._stop.wait(_RETRY_SECONDS)

    def _follow(self, client: redis.Redis) -> None:
        pubsub = client.pubsub()  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(CHANNEL)
            while pubsub.get_message(timeout=self._timeout) is None:  # the confirmation
                if self._stop.is_set():
                    return
            # Subscribed first, loaded second: nothing written in between is missed.
            loaded_at = time.monotonic()
            entries = self._load(client)  # old key names (an upgrade), or every entry
            if self._cluster is not None:
                entries.update(self._load(self._cluster.client))
            self._entries = entries
            sent: dict[bytes, float] = {}
            seq = 0
            next_ping = loaded_at
            while not self._stop.is_set():
                now = time.monotonic()
                if now >= next_ping:
                    seq += 1
                    token = _PING_PREFIX + str(seq).encode()
                    sent[token] = now
                    pubsub.ping(token)
                    next_ping = now + PING_EVERY
                message = pubsub.get_message(timeout=PING_EVERY / 2)
                if message is not None:
                    self._apply(message, sent)
                if sent and now - min(sent.values()) > 2 * STALE_AFTER:
                    raise RedisError("subscription stalled: PINGs unanswered")
        finally:
            with contextlib.suppress(RedisError):
                pubsub.close()

    def _apply(self, message: dict[str, Any], sent: dict[bytes, float]) -> None:
        kind = message["type"]
        if kind == "pong":
            at = sent.pop(bytes(message["data"] or b""), None)
            if at is not None:
                self._fresh_at = max(self._fresh_at, at)
                for token in [t for t, s in sent.items() if s < at]:  # answered in order
                    del sent[token]
        elif kind == "message":
            parsed = parse_message(bytes(message["data"]))
            if parsed is not None:
                self.note(*parsed)

    def _load(self, client: Any) -> dict[str, Entry]:
        """Every denylist entry of `client` (a `redis.Redis`, or a `RedisCluster`, whose
        SCAN visits every primary)."""
        keys: list[bytes] = []
        for prefix in PREFIXES:
            keys.extend(client.scan_iter(match=prefix + "*", count=1000))
        entries: dict[str, Entry] = {}
        now = time.monotonic()
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.get(key)
                pipe.pttl(key)
            replies = pipe.execute()
            for i, key in enumerate(chunk):
                value, ttl = replies[2 * i], replies[2 * i + 1]
                if value is None:
                    continue  # expired meanwhile
                expires = now + ttl / 1000 if ttl is not None and ttl >= 0 else math.inf
                entries[key.decode()] = (value, expires)
        return entries
