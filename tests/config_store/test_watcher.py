"""The watcher thread against committed changes: pub/sub, polling fallback, fork safety.

These tests commit for real (the watcher reads on its own connection, as in production)
and delete what they wrote afterwards.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from sqlalchemy import Engine, delete
from sqlmodel import Session, col

from app.config_store import service
from app.config_store.models import ConfigAudit
from app.config_store.store import ConfigStore
from app.settings import Settings
from tests.config_store.conftest import SPECS
from tests.support.processes import free_port

Writer = Callable[..., service.ConfigChange]
log = logging.getLogger(__name__)  # figures for the report: --log-cli-level=INFO


@pytest.fixture
def committed(migrated_engine: Engine, redis_url: str) -> Iterator[Writer]:
    """`write(name, spec=None, delete=False, announce=True)`: a committed change."""
    names: list[str] = []
    client = redis.Redis.from_url(redis_url)

    def write(name: str, *, remove: bool = False, announce: bool = True) -> service.ConfigChange:
        names.append(name)
        with Session(migrated_engine, expire_on_commit=False) as session:
            if remove:
                return service.delete_config(
                    session=session,
                    kind="RateLimitPolicy",
                    name=name,
                    source=service.Source.admin(),
                    actor="test",
                    redis_client=client if announce else None,
                )
            return service.upsert_config(
                session=session,
                kind="RateLimitPolicy",
                name=name,
                spec=SPECS["RateLimitPolicy"],
                source=service.Source.admin(),
                actor="test",
                redis_client=client if announce else None,
            )

    yield write
    with Session(migrated_engine) as session:
        for name in set(names):
            with contextlib.suppress(service.NotFound):
                service.delete_config(
                    session=session,
                    kind="RateLimitPolicy",
                    name=name,
                    source=service.Source.admin(),
                    actor="test",
                )
        session.exec(delete(ConfigAudit).where(col(ConfigAudit.name).in_(names)))  # type: ignore[call-overload]
        session.commit()
    client.close()


def wait_generation(store: ConfigStore, generation: int, timeout: float) -> float:
    """Seconds until the store holds `generation` (or newer); fails after `timeout`."""
    started = time.perf_counter()
    while store.generation < generation:
        assert time.perf_counter() - started < timeout, f"still at {store.generation}"
        time.sleep(0.002)
    return time.perf_counter() - started


@pytest.fixture
def make_store(settings: Settings) -> Iterator[Callable[..., ConfigStore]]:
    """`make_store(**settings_overrides)`: a started store, stopped after the test."""
    stores: list[ConfigStore] = []

    def factory(**overrides: Any) -> ConfigStore:
        store = ConfigStore(settings.model_copy(update=overrides))
        stores.append(store)
        store.current()
        return store

    yield factory
    for store in stores:
        store.stop()


def test_a_committed_change_arrives_by_pubsub_long_before_the_next_poll(
    make_store: Callable[..., ConfigStore], committed: Writer
) -> None:
    # The next poll is a minute away, so arriving within a few seconds can only be the
    # announcement. The 1 s bound is asserted end to end, across gunicorn workers,
    # in test_propagation.py; here a stall of the shared CI machine (one seen: > 1 s)
    # must not pass for a lost message.
    store = make_store(config_poll_interval=60)
    assert store.loaded
    name = f"w-{secrets.token_hex(3)}"
    created = wait_generation(store, committed(name).generation, timeout=5.0)
    assert name in store.current().rate_limit_policies
    removed = wait_generation(store, committed(name, remove=True).generation, timeout=5.0)
    assert name not in store.current().rate_limit_policies
    log.info("pubsub propagation: create %.1f ms, delete %.1f ms", created * 1e3, removed * 1e3)


def test_without_redis_changes_still_arrive_by_polling(
    make_store: Callable[..., ConfigStore], committed: Writer
) -> None:
    store = make_store(redis_url=f"redis://127.0.0.1:{free_port()}/0", config_poll_interval=0.2)
    assert store.loaded  # PostgreSQL alone is enough to load
    took = wait_generation(store, committed(f"w-{secrets.token_hex(3)}").generation, timeout=1.5)
    log.info("poll propagation (interval 0.2 s): %.0f ms", took * 1e3)


def test_an_unannounced_change_is_found_by_the_poll(
    make_store: Callable[..., ConfigStore], committed: Writer
) -> None:
    store = make_store(config_poll_interval=0.3)
    change = committed(f"w-{secrets.token_hex(3)}", announce=False)
    wait_generation(store, change.generation, timeout=1.5)


def test_a_forked_child_starts_its_own_watcher_and_follows_changes(
    make_store: Callable[..., ConfigStore], committed: Writer
) -> None:
    store = make_store(config_poll_interval=30)
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report, never return into pytest
        code = 1
        try:
            os.close(ready_r)
            inherited = store.generation
            store.current()  # new pid: fresh locks, a new watcher thread
            os.write(ready_w, b"1")
            target = int(os.read(go_r, 32))
            took = wait_generation(store, target, timeout=2.0)
            result = {"inherited": inherited, "seen": store.generation, "took": took}
            os.write(out_w, json.dumps(result).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(ready_w)
    assert os.read(ready_r, 1) == b"1"
    change = committed(f"w-{secrets.token_hex(3)}")
    os.write(go_w, str(change.generation).encode())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    result = json.loads(os.read(out_r, 4096))
    assert result["seen"] >= change.generation and result["took"] < 1.0
    for fd in (ready_r, go_r, go_w, out_r, out_w):
        os.close(fd)
