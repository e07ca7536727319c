"""AI gateway tests: simulator processes for the session, fast retry settings per test."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection

from app.ai.history import queue as history_queue
from app.core.db import SESSION_FACTORY
from app.settings import Settings
from tests.ai.support import Sim, run_sim


@pytest.fixture(scope="session")
def sim_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where simulator processes log."""
    return tmp_path_factory.mktemp("provider-sim")


@pytest.fixture(scope="session")
def _sim_a(sim_logs: Path) -> Iterator[Sim]:
    with run_sim(sim_logs, name="a") as sim:
        yield sim


@pytest.fixture(scope="session")
def _sim_b(sim_logs: Path) -> Iterator[Sim]:
    with run_sim(sim_logs, name="b") as sim:
        yield sim


@pytest.fixture(scope="session")
def _sim_slow(sim_logs: Path) -> Iterator[Sim]:
    with run_sim(sim_logs, stream_delay=0.05, name="slow") as sim:
        yield sim


@pytest.fixture
def sim(_sim_a: Sim) -> Sim:
    """The first simulator, reset (no faults, any key)."""
    _sim_a.reset()
    return _sim_a


@pytest.fixture
def sim_b(_sim_b: Sim) -> Sim:
    """A second simulator (a second provider), reset."""
    _sim_b.reset()
    return _sim_b


@pytest.fixture
def slow_sim(_sim_slow: Sim) -> Sim:
    """A simulator that spaces stream chunks 50 ms apart, reset."""
    _sim_slow.reset()
    return _sim_slow


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    """Test settings with short retry waits and a small breaker (seconds, not minutes)."""
    return Settings(
        app_env="test",
        database_url=database_url,
        redis_url=redis_url,
        log_json=True,
        log_level="INFO",
        ai_retry_base_seconds=0.05,
        ai_retry_max_wait=2.0,
        ai_breaker_failures=2,
        ai_breaker_open_seconds=1.0,
        ai_request_deadline=10.0,
    )


@pytest.fixture(autouse=True)
def _history_in_the_test_transaction(request: pytest.FixtureRequest) -> None:
    """In-process apps write their history rows inside the per-test transaction.

    The drainer thread would commit them on its own connection, outside the transaction
    rolled back after the test; so no thread here, and tests call `written(app)` (a
    foreground drain of the same journal) before reading history. The thread itself is
    tested against real processes in test_history_durability.py.
    """
    if "app" not in request.fixturenames:
        return
    app = request.getfixturevalue("app")
    journal = history_queue.journal(app)
    journal.background = False

    @contextlib.contextmanager
    def begin() -> Iterator[Connection]:
        with app.extensions[SESSION_FACTORY]() as session:  # a savepoint of the test's
            yield session.connection()
            session.commit()

    journal.write = history_queue.Writer(begin)
