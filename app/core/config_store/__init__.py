"""Runtime config store: PostgreSQL control tables -> an immutable per-process snapshot.

    from app.core.config_store import current_snapshot, subscribe

    snap = current_snapshot()          # never blocks (after the process's first call)
    snap.generation, snap.rate_limit_policies, snap.api_version(1)
    subscribe(lambda snap: ...)        # run after every swap, in the watcher thread

Writes go through `app.services.config` (admin API and operator alike); see
docs/config-store.md.
"""

from __future__ import annotations

from typing import Final

from flask import Flask, current_app

from app.config import Settings
from app.core.config_store.channel import CHANNEL, announce
from app.core.config_store.snapshot import (
    AI_PROVIDER,
    API_VERSION,
    EMPTY,
    RATE_LIMIT_POLICY,
    ConfigEntry,
    InvalidRow,
    Snapshot,
    build_snapshot,
)
from app.core.config_store.store import ConfigStore, SnapshotNotLoaded, Subscriber

EXTENSION: Final = "config_store"

__all__ = [
    "AI_PROVIDER",
    "API_VERSION",
    "CHANNEL",
    "EMPTY",
    "EXTENSION",
    "RATE_LIMIT_POLICY",
    "ConfigEntry",
    "ConfigStore",
    "InvalidRow",
    "Snapshot",
    "SnapshotNotLoaded",
    "Subscriber",
    "announce",
    "build_snapshot",
    "config_store",
    "current_snapshot",
    "init_app",
    "subscribe",
]


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
