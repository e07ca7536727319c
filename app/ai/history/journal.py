"""A durable write-behind queue: records land in Redis before the answer, in PostgreSQL after.

    journal = Journal(redis_client, name="history", write=insert_rows)
    if not journal.push(record):      # one RPUSH; False when Redis cannot take it
        insert_rows([record])         # the caller writes inline instead
    journal.drain()                   # foreground: write everything queued (beat, shutdown)

`push` is the only work on the request path. A drainer thread per process wakes on the
first push, waits `delay` seconds so records arrive in batches, then moves up to `batch`
of them atomically from the pending list to its own in-flight list (Lua), writes them
with one statement and deletes the in-flight list. A record is therefore always in
Redis (pending or in flight) or written: a drainer killed mid-write leaves its in-flight
list, which any `recover()` (the drainer at start, beat every `lease` seconds) moves back
once the drainer's lease has expired. Writing twice is harmless (`write` must be
idempotent: the history insert is ON CONFLICT (id) DO NOTHING). Redis' own durability is
the limit: see docs/ai.md "History".
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Final, cast

import orjson
import redis
from redis.exceptions import RedisError

from app.hotstore.commands import Command, ThreadCommands

log = logging.getLogger("structured_api.ai")

PREFIX: Final = "sapi:ai:journal:"
#: After a failed push, skip Redis for this long (write inline) instead of paying its
#: timeout on every request.
COOLDOWN_SECONDS: Final = 1.0
_MAX_BACKOFF: Final = 5.0

# KEYS: pending, inflight, consumers. ARGV: batch, consumer, lease deadline (epoch s),
# ack ('1': what the consumer holds is written, delete it first: one round trip less).
# A consumer first gets back what it still holds (its last ack may have failed).
_TAKE: Final = """
if ARGV[4] == '1' then
  redis.call('DEL', KEYS[2])
end
local held = redis.call('LRANGE', KEYS[2], 0, -1)
if #held > 0 then
  redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
  return held
end
local items = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #items == 0 then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return items
end
redis.call('LTRIM', KEYS[1], #items, -1)
redis.call('RPUSH', KEYS[2], unpack(items))
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
return items
"""
# KEYS: pending, consumers. ARGV: now (epoch s), in-flight key prefix.
_RECOVER: Final = """
local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1])
local moved = 0
for _, consumer in ipairs(dead) do
  local key = ARGV[2] .. consumer
  local items = redis.call('LRANGE', key, 0, -1)
  for i = 1, #items, 1000 do
    redis.call('RPUSH', KEYS[1], unpack(items, i, math.min(i + 999, #items)))
  end
  moved = moved + #items
  redis.call('DEL', key)
  redis.call('ZREM', KEYS[2], consumer)
end
return moved
"""


def _dump(record: dict[str, Any]) -> bytes:
    """Compact JSON: orjson (several times faster on a history row), or the standard
    library for what orjson refuses (integers beyond 64 bits; lone surrogates, which
    request validation already refuses)."""
    try:
        return orjson.dumps(record)
    except orjson.JSONEncodeError:
        return json.dumps(record, separators=(",", ":")).encode()


#: Writes a batch of records as pushed (JSON, undecoded); must be idempotent.
Write = Callable[[list[bytes]], None]

_LIVE: weakref.WeakSet[Journal] = weakref.WeakSet()


class Journal:
    """See the module docstring. One per app and process; thread-safe."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        name: str,
        write: Write | None,
        batch: int = 200,
        delay: float = 0.05,
        lease: float = 30.0,
        idle_exit: float = 30.0,
    ) -> None:
        self.client = client
        self.write = write
        self.batch = batch
        self.delay = delay
        self.lease = lease
        self.idle_exit = idle_exit
        #: False: no drainer thread; records wait for `drain()` (tests in a transaction).
        self.background = True
        tag = f"{PREFIX}{{{name}}}"  # one hash tag: every key of a journal in one slot
        self.pending_key = f"{tag}:pending"
        self.consumers_key = f"{tag}:consumers"
        self.inflight_prefix = f"{tag}:inflight:"
        self._rpush = ThreadCommands(client)  # the request path's one command
        self._take = client.register_script(_TAKE)
        self._recover = client.register_script(_RECOVER)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._down_until = 0.0

    # -- the request path ------------------------------------------------------------------
    def push(self, record: dict[str, Any], *, also: Sequence[Command] = ()) -> bool:
        """Queue `record` (one round trip); False when Redis did not take it.

        `also`: commands for the same Redis sent in the same round trip, after the push
        (their replies are not read back; an error reply leaves what they do undone).
        """
        if time.monotonic() < self._down_until:
            return False
        data = _dump(record)
        try:
            if also:
                pushed = self._rpush.pipeline(("RPUSH", self.pending_key, data), *also)[0]
                if isinstance(pushed, RedisError):
                    raise pushed
            else:
                self._rpush("RPUSH", self.pending_key, data)
        except RedisError as exc:
            self._down_until = time.monotonic() + COOLDOWN_SECONDS
            log.warning("AI journal push failed (%s): writing inline", type(exc).__name__)
            return False
        if self.background:
            self._wake_drainer()
        return True

    # -- draining --------------------------------------------------------------------------
    def drain(self, *, consumer: str | None = None, deadline: float | None = None) -> int:
        """Write what is queued now, batch by batch, in this thread; how many records.

        Stops when the queue is empty or at `deadline` (monotonic); raises what `write`
        or Redis raise (the batch stays in flight, recovered once its lease expires).
        """
        consumer = consumer or f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        inflight = self.inflight_prefix + consumer
        done, written = 0, False
        while deadline is None or time.monotonic() < deadline:
            raw = cast(
                list[bytes],
                self._take(
                    keys=[self.pending_key, inflight, self.consumers_key],
                    args=[self.batch, consumer, time.time() + self.lease, int(written)],
                ),
            )
            written = False
            if not raw:
                return done
            if self.write is None:
                raise RuntimeError("a journal without a writer is only read (its backlog)")
            self.write(raw)
            written = True
            done += len(raw)
        if written:
            self.client.delete(inflight)
        return done

    def recover(self) -> int:
        """Move the in-flight records of consumers whose lease expired back to pending.

        Leases are wall-clock deadlines from each process's clock: a skewed clock can only
        make a batch come back early and be written twice, which `write` makes a no-op.
        """
        moved = int(
            cast(
                int,
                self._recover(
                    keys=[self.pending_key, self.consumers_key],
                    args=[time.time(), self.inflight_prefix],
                ),
            )
        )
        if moved:
            log.warning("AI journal: %d records of a stopped drainer queued again", moved)
        return moved

    def backlog(self) -> int:
        """Records not yet written: pending plus every drainer's in-flight list."""
        consumers = cast(list[bytes], self.client.zrange(self.consumers_key, 0, -1))
        pipe = self.client.pipeline(transaction=False)
        pipe.llen(self.pending_key)
        for consumer in consumers:
            pipe.llen(self.inflight_prefix + consumer.decode())
        return sum(int(n) for n in pipe.execute())

    def wait_empty(self, timeout: float) -> bool:
        """Wait until `backlog()` is 0 (True) or `timeout` seconds passed (False)."""
        end = time.monotonic() + timeout
        while self.backlog():
            if time.monotonic() >= end:
                return False
            time.sleep(0.01)
        return True

    # -- the drainer thread ----------------------------------------------------------------
    def _wake_drainer(self) -> None:
        # A wake-up still pending (not yet cleared by a live drainer of this process) will
        # drain what was just pushed: nothing to do, and no lock taken on the request path.
        thread = self._thread
        if (
            self._wake.is_set() and thread is not None and self._pid == os.getpid()
            and thread.is_alive()
        ):  # fmt: skip
            return
        # Under the lock with the thread's exit decision, so a wake-up is never missed.
        with self._lock:
            self._wake.set()
            if self._pid != os.getpid():  # forked: the parent's thread is not ours
                self._thread, self._pid = None, os.getpid()
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._run, name="ai-journal-drainer", daemon=True
                )
                self._thread.start()
                _LIVE.add(self)

    def _run(self) -> None:
        consumer = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
        backoff = 0.0
        with contextlib.suppress(RedisError):
            self.recover()
        while True:
            woke = self._wake.wait(backoff or self.idle_exit)
            if not woke and not backoff:
                with self._lock:
                    if not self._wake.is_set():
                        self._thread = None
                        return
                continue
            self._wake.clear()
            if not backoff:
                time.sleep(self.delay)  # let a batch gather
            try:
                self.drain(consumer=consumer)
                backoff = 0.0
            except Exception as exc:
                backoff = min(_MAX_BACKOFF, max(0.1, backoff * 2))
                log.warning(
                    "AI journal drain failed (%s); retrying in %.1f s", type(exc).__name__, backoff
                )

    def flush(self, timeout: float) -> None:
        """Best-effort foreground drain (process exit); what is left stays queued."""
        try:
            self.drain(deadline=time.monotonic() + timeout)
        except Exception as exc:
            log.warning("AI journal flush at exit failed (%s)", type(exc).__name__)


def flush_all(timeout: float = 2.0) -> None:
    """Drain every journal whose drainer is running in this process (atexit: a worker
    stopping gracefully writes what it queued instead of leaving it to beat's sweep)."""
    for journal in list(_LIVE):
        thread = journal._thread
        if journal._pid == os.getpid() and thread is not None and thread.is_alive():
            journal.flush(timeout)


atexit.register(flush_all)
