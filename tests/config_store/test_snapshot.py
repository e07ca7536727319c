"""Snapshots and the store's swap: immutable, validated, newest wins, subscribers in order."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from app.config_store import service
from app.config_store.extension import config_store
from app.config_store.snapshot import EMPTY, Snapshot, build_snapshot
from app.config_store.store import ConfigStore, SnapshotNotLoaded
from app.core.specs import RateLimitPolicySpec
from app.settings import Settings
from tests.config_store.conftest import SPECS
from tests.support.processes import free_port


def row(kind: str, name: str, spec: dict[str, Any], generation: int = 1) -> dict[str, Any]:
    """A stored row as the loader hands it to `build_snapshot`."""
    return {"kind": kind, "name": name, "spec": spec, "source": "admin", "generation": generation}


def test_a_snapshot_cannot_be_changed_after_it_is_built() -> None:
    snap = build_snapshot(3, [row("RateLimitPolicy", "p", SPECS["RateLimitPolicy"])])
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.generation = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.entries["RateLimitPolicy"]["q"] = snap.entries["RateLimitPolicy"]["p"]  # type: ignore[index]
    with pytest.raises(TypeError):
        snap.entries["AIProvider"] = {}  # type: ignore[index]
    assert isinstance(snap.rate_limit_policies["p"], RateLimitPolicySpec)


def test_rows_the_code_refuses_are_set_aside_without_hiding_the_others() -> None:
    snap = build_snapshot(
        7,
        [
            row("RateLimitPolicy", "good", SPECS["RateLimitPolicy"]),
            row("RateLimitPolicy", "future", {"rules": [], "newField": True}),
            row("Gadget", "what", {}),
        ],
    )
    assert list(snap.rate_limit_policies) == ["good"]
    assert {(i.kind, i.name) for i in snap.invalid} == {
        ("RateLimitPolicy", "future"),
        ("Gadget", "what"),
    }


def test_api_versions_are_indexed_by_url_major() -> None:
    snap = build_snapshot(1, [row("ApiVersion", "legacy", {"version": "1.0", "phase": "Retired"})])
    spec = snap.api_version(1)
    assert spec is not None and spec.phase == "Retired"
    assert snap.api_version(2) is None


def test_the_loader_reads_generation_and_rows_of_one_transaction(
    app: Flask, session: Session, refresh: Callable[[], Snapshot]
) -> None:
    change = service.upsert_config(
        session=session,
        kind="AIProvider",
        name="echo",
        spec=SPECS["AIProvider"],
        source=service.Source.admin(),
        actor="test",
    )
    snap = refresh()
    assert snap.generation == change.generation and snap.loaded
    assert snap.ai_providers["echo"].models[0].name == "echo-1"
    assert config_store(app).current() is snap


def test_only_a_newer_generation_replaces_the_held_snapshot(settings: Settings) -> None:
    store = ConfigStore(settings)
    seen: list[int] = []
    store.subscribe(lambda s: seen.append(s.generation))
    assert store.install(build_snapshot(5, []))
    assert not store.install(build_snapshot(4, []))
    assert not store.install(build_snapshot(5, []))
    assert store.install(build_snapshot(6, []))
    assert seen == [5, 6]


def test_a_failing_subscriber_does_not_stop_the_others(settings: Settings) -> None:
    store = ConfigStore(settings)
    seen: list[int] = []

    def broken(_: Snapshot) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(lambda s: seen.append(s.generation))
    store.install(build_snapshot(9, []))
    assert seen == [9]
    late: list[int] = []
    store.subscribe(lambda s: late.append(s.generation))  # a late subscriber gets the current one
    assert late == [9]


def test_without_postgresql_the_first_call_returns_quickly_and_later_calls_never_wait(
    settings: Settings,
) -> None:
    dead = settings.model_copy(
        update={"database_url": f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/x"}
    )
    store = ConfigStore(dead)
    try:
        started = time.perf_counter()
        first = store.current()
        first_took = time.perf_counter() - started
        started = time.perf_counter()
        for _ in range(1000):
            store.current()
        per_call = (time.perf_counter() - started) / 1000
        assert first is EMPTY and not first.loaded
        assert first_took < dead.config_initial_load_timeout
        assert per_call < 50e-6, per_call
        with pytest.raises(SnapshotNotLoaded):
            store.check_ready()
        assert store.last_error == "OperationalError"
    finally:
        store.stop()


def test_readiness_reports_the_loaded_snapshot(client: FlaskClient) -> None:
    checks = {c["name"]: c for c in client.get("/readyz").get_json()["data"]["checks"]}
    assert checks["config"]["ok"] is True
