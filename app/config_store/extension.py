"""Runtime config store: PostgreSQL control tables -> an immutable per-process snapshot.

    from app.config_store.extension import current_snapshot, subscribe

    snap = current_snapshot()          # never blocks (after the process's first call)
    snap.generation, snap.rate_limit_policies, snap.api_version(1)
    subscribe(lambda snap: ...)        # run after every swap, in the watcher thread

Writes go through `app.config_store.service` (admin API and operator alike); see
docs/config-store.md.
"""

from __future__ import annotations

from typing import Final

from flask import Flask, current_app

from app.config_store.service import ACTION_UNCHANGED, ConfigChange
from app.config_store.snapshot import Snapshot
from app.config_store.store import ConfigStore, Subscriber
from app.core.warnings import WarningLevel, warn
from app.settings import Settings

EXTENSION: Final = "config_store"


def init_app(app: Flask, settings: Settings, *, role: str = "api") -> ConfigStore:
    """Create the store (no I/O, no thread: both start on first use in each process)."""
    store = ConfigStore(settings, role=role)
    app.extensions[EXTENSION] = store
    return store


def config_store(app: Flask | None = None) -> ConfigStore:
    """The store of `app` (default: the current app)."""
    store: ConfigStore = (app or current_app).extensions[EXTENSION]
    return store


def current_snapshot() -> Snapshot:
    """The current app's snapshot; starts this process's watcher on first use."""
    store: ConfigStore = current_app.extensions[EXTENSION]
    return store.current()


def subscribe(callback: Subscriber, app: Flask | None = None) -> None:
    """Register `callback(snapshot)` on the store of `app` (default: the current app)."""
    config_store(app).subscribe(callback)


def warn_if_unannounced(change: ConfigChange) -> None:
    """Tell the caller (envelope warning) that a stored change was not announced on Redis."""
    if change.announced or change.action == ACTION_UNCHANGED:
        return
    warn(
        "CONFIG_ANNOUNCE_DELAYED",
        "Stored, but Redis is unreachable: processes pick the change up by polling.",
        WarningLevel.INFO,
        generation=change.generation,
    )
