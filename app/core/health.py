"""Readiness checks: each subsystem registers a named check; /readyz runs them all.

Checks run concurrently, each bounded by `readiness_timeout`, so one hung dependency
cannot hang the probe (a hung check is reported as a timeout). Each check is
single-flight: while one run of it is still going, later probes wait on that run
instead of starting another, so a hung dependency holds one thread, not one per probe,
and never starves the other checks (a frozen PostgreSQL once made a burst of probes
report Redis and the config snapshot as timed out too).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

from flask import Flask, current_app

EXTENSION: Final = "readiness"
# Single-flight keeps at most one thread busy per check: this bounds the checks.
MAX_CHECKS: Final = 16
Check = Callable[[], None]
Outcome = tuple[str | None, float]


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one dependency check."""

    name: str
    ok: bool
    latency_ms: float
    error: str | None = None


class Readiness:
    """The registry of checks for one app."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.checks: dict[str, Check] = {}
        self._lock = threading.Lock()
        self._pid = -1
        self._pool: ThreadPoolExecutor | None = None
        self._inflight: dict[str, Future[Outcome]] = {}

    def register(self, name: str, check: Check) -> None:
        """Add (or replace) a named check that raises when the dependency is not ready."""
        if name not in self.checks and len(self.checks) >= MAX_CHECKS:
            raise ValueError(f"at most {MAX_CHECKS} readiness checks")
        self.checks[name] = check

    def _start(self, name: str, check: Check) -> Future[Outcome]:
        """The running future of `name`, or a new run of it (caller holds the lock)."""
        if self._pid != os.getpid():
            # Threads and futures do not survive fork: a child starts afresh.
            self._pid = os.getpid()
            self._pool = ThreadPoolExecutor(max_workers=MAX_CHECKS, thread_name_prefix="readyz")
            self._inflight = {}
        assert self._pool is not None
        future = self._inflight.get(name)
        if future is None or future.done():
            future = self._inflight[name] = self._pool.submit(_timed, check)
        return future

    def run(self) -> list[CheckResult]:
        """Run every check concurrently within the timeout."""
        started = time.perf_counter()
        with self._lock:
            futures = {self._start(name, check): name for name, check in self.checks.items()}
        done, _ = wait(futures, timeout=self.timeout)
        results = []
        for future, name in futures.items():
            if future in done:
                error, latency = future.result()
                results.append(CheckResult(name, error is None, latency, error))
            else:
                elapsed = (time.perf_counter() - started) * 1000
                results.append(CheckResult(name, False, round(elapsed, 2), "timeout"))
        return sorted(results, key=lambda r: r.name)


def _timed(check: Check) -> Outcome:
    started = time.perf_counter()
    try:
        check()
        error = None
    except Exception as exc:
        # Only the exception type: messages can carry hosts, users or passwords.
        error = type(exc).__name__
    return error, round((time.perf_counter() - started) * 1000, 2)


def init_app(app: Flask, timeout: float) -> Readiness:
    """Create the registry for this app."""
    readiness = Readiness(timeout)
    app.extensions[EXTENSION] = readiness
    return readiness


def readiness() -> Readiness:
    """The current app's readiness registry."""
    r: Readiness = current_app.extensions[EXTENSION]
    return r
