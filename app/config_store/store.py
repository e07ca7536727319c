"""`ConfigStore`: the per-process holder of the current snapshot.

Reading is one attribute load (`store.current()`); only the watcher thread (or an
explicit `refresh()`) replaces the snapshot, by assigning a new immutable object.

Fork safety: nothing starts in `create_app` (no I/O there). The first `current()` in a
process starts its watcher thread; a process forked afterwards (gunicorn worker,
Celery prefork child) sees a different pid on its first call and starts its own, with
fresh locks and connections. Only the very first call in a process may wait, at most
`config_initial_load_timeout` seconds, for the first load, so its first request is not
served with an empty config; later calls never wait.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Final

from sqlalchemy import Connection, create_engine
from sqlalchemy.pool import NullPool

from app.config_store.loader import load_snapshot
from app.config_store.snapshot import EMPTY, Snapshot
from app.config_store.watcher import Watcher
from app.core.observability import metrics
from app.settings import Settings

log = logging.getLogger("structured_api.config")

Subscriber = Callable[[Snapshot], None]
THREAD_NAME: Final = "config-watcher"


class SnapshotNotLoaded(RuntimeError):
    """The process has not loaded a config snapshot yet (readiness fails with this name)."""


def _new_start_lock() -> None:
    global _START_LOCK, _PID
    _START_LOCK, _PID = threading.Lock(), os.getpid()


_START_LOCK = threading.Lock()
#: This process's id, kept here: `current()` compares it on every request, and
#: `os.getpid()` is a system call each time.
_PID = os.getpid()
# A lock held by another thread at fork time stays locked forever in the child, where
# that thread does not exist: give every child a fresh one (os.register_at_fork docs).
os.register_at_fork(after_in_child=_new_start_lock)


class ConfigStore:
    """Holds the snapshot of one app in one process; see the module docstring."""

    def __init__(self, settings: Settings, *, role: str = "api") -> None:
        self.settings = settings
        self.role = role  # metric label: api | worker | operator
        self._snapshot: Snapshot | None = None
        self._subscribers: list[Subscriber] = []
        self._pid: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loaded = threading.Event()
        self._attempted = threading.Event()  # first load finished, successfully or not
        self._install_lock = threading.Lock()
        self._waited = False
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.subscribed = False  # the watcher holds a live Redis subscription

    # -- reading ---------------------------------------------------------------------

    def current(self) -> Snapshot:
        """The snapshot to use now; never blocks after the process's first call."""
        if self._pid != _PID:
            self._start()
        snapshot = self._snapshot
        if snapshot is not None:
            return snapshot
        if not self._waited:
            # Returns as soon as the first attempt ends: a refused connection costs
            # milliseconds, not the whole timeout.
            self._attempted.wait(self.settings.config_initial_load_timeout)
            self._waited = True
        return self._snapshot or EMPTY

    @property
    def generation(self) -> int:
        """Generation of the snapshot held (0 before the first load)."""
        snapshot = self._snapshot
        return snapshot.generation if snapshot is not None else 0

    @property
    def loaded(self) -> bool:
        """True once a snapshot was loaded from PostgreSQL in this process."""
        snapshot = self._snapshot
        return snapshot is not None and snapshot.loaded

    def check_ready(self) -> None:
        """Readiness check: raise `SnapshotNotLoaded` until the first load succeeded."""
        if self._pid != os.getpid():
            self._start()
        self._attempted.wait(self.settings.readiness_timeout * 0.8)
        if not self._loaded.is_set():
            raise SnapshotNotLoaded(self.last_error or "not loaded yet")

    # -- changing ----------------------------------------------------------------------

    def subscribe(self, callback: Subscriber) -> None:
        """Call `callback(snapshot)` after every swap (and now, if one is loaded).

        Callbacks run in the thread that installs the snapshot (the watcher), one at a
        time, in generation order: the place to precompile derived structures (the rate
        limiter's policy index) so requests only read them. Exceptions are logged.
        """
        with self._install_lock:
            self._subscribers.append(callback)
            snapshot = self._snapshot
            if snapshot is not None and snapshot.loaded:
                self._notify(callback, snapshot)

    def install(self, snapshot: Snapshot, *, trigger: str = "manual") -> bool:
        """Swap in `snapshot` if it is newer than the one held; True when swapped."""
        with self._install_lock:
            held = self._snapshot
            if held is not None and held.loaded and snapshot.generation <= held.generation:
                return False
            self._snapshot = snapshot  # one reference assignment: atomic for readers
            self._loaded.set()
            self._attempted.set()
            self.last_error = None
            metrics.CONFIG_GENERATION.labels(role=self.role).set(snapshot.generation)
            for callback in list(self._subscribers):
                self._notify(callback, snapshot)
        log.info(
            "config snapshot installed",
            extra={"generation": snapshot.generation, "trigger": trigger, "pid": os.getpid()},
        )
        return True

    def refresh(self, connection: Connection | None = None) -> Snapshot:
        """Load synchronously (CLI, tests) through `connection` or a throwaway one."""
        if connection is not None:
            self.install(load_snapshot(connection), trigger="manual")
        else:
            engine = create_engine(self.settings.database_url, poolclass=NullPool)
            try:
                with engine.connect() as conn:
                    self.install(load_snapshot(conn), trigger="manual")
            finally:
                engine.dispose()
        return self._snapshot or EMPTY

    def record_failure(self, error: str) -> None:
        """Remember the last reload failure (exception type only: no hosts or secrets)."""
        self.last_error, self.last_error_at = error, time.time()
        self._attempted.set()

    # -- thread ------------------------------------------------------------------------

    def _start(self) -> None:
        with _START_LOCK:
            pid = os.getpid()
            if self._pid == pid:
                return
            # Fresh synchronisation objects: the parent's may have been held at fork.
            self._stop = threading.Event()
            self._loaded = threading.Event()
            self._attempted = threading.Event()
            self._install_lock = threading.Lock()
            self._waited = False
            self.subscribed = False  # the parent's subscription is not ours
            if self._snapshot is not None and self._snapshot.loaded:
                # Inherited from the parent: still valid data, nothing to wait for.
                self._loaded.set()
                self._attempted.set()
            watcher = Watcher(self, self._stop)
            thread = threading.Thread(target=watcher.run, name=THREAD_NAME, daemon=True)
            thread.start()
            self._thread, self._pid = thread, pid

    def stop(self, timeout: float = 5.0) -> None:
        """Stop this process's watcher (tests, shutdown); the snapshot stays readable."""
        self._stop.set()
        thread = self._thread
        if thread is not None and self._pid == os.getpid():
            thread.join(timeout)
        self._thread = None

    def _notify(self, callback: Subscriber, snapshot: Snapshot) -> None:
        try:
            callback(snapshot)
        except Exception:
            log.exception("config subscriber %r failed", callback)
