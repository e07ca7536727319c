"""Readiness checks: each subsystem registers a named check; /readyz runs them all.

Checks run concurrently, each bounded by `readiness_timeout`, so one hung dependency
cannot hang the probe (a hung check is reported as a timeout).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Final

from flask import Flask, current_app

EXTENSION: Final = "readiness"
Check = Callable[[], None]


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
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="readyz")

    def register(self, name: str, check: Check) -> None:
        """Add (or replace) a named check that raises when the dependency is not ready."""
        self.checks[name] = check

    def run(self) -> list[CheckResult]:
        """Run every check concurrently within the timeout."""
        started = time.perf_counter()
        futures = {self._pool.submit(_timed, check): name for name, check in self.checks.items()}
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


def _timed(check: Check) -> tuple[str | None, float]:
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
