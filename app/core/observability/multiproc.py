"""prometheus-client multiprocess mode: one scrape sums every process of a pod.

gunicorn workers and Celery prefork children each write their samples to mmap files
in `PROMETHEUS_MULTIPROC_DIR`; the scrape handler merges them. The directory must be
emptied when the server starts (stale files make scrapes slow and wrong,
prometheus/client_python#367) and a dead worker's live gauges removed
(`mark_process_dead`). prometheus-client reads the variable when it is imported, so
the environment, not `Settings`, is what decides here; `Settings` mirrors it to
document it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

from prometheus_client import REGISTRY, CollectorRegistry, multiprocess

ENV_VAR: Final = "PROMETHEUS_MULTIPROC_DIR"


def directory() -> Path | None:
    """The multiprocess directory of this process, or None in single-process mode."""
    value = os.environ.get(ENV_VAR) or os.environ.get(ENV_VAR.lower())
    return Path(value) if value else None


def wipe(path: Path) -> int:
    """Create `path` if missing and delete every `*.db` in it; return how many went."""
    path.mkdir(parents=True, exist_ok=True)
    removed = 0
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)
        removed += 1
    return removed


def mark_dead(pid: int) -> None:
    """Drop the live-gauge files of a process that exited (no-op in single-process mode)."""
    path = directory()
    if path is not None:
        multiprocess.mark_process_dead(pid, str(path))  # type: ignore[no-untyped-call]


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape should read: all processes' files, or this process's metrics."""
    path = directory()
    if path is None:
        return REGISTRY
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry, path=str(path))  # type: ignore[no-untyped-call]
    return registry
