"""The readiness registry: bounded, single-flight checks that a hung one cannot starve."""

from __future__ import annotations

import multiprocessing
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from app.core.health import MAX_CHECKS, Readiness

TIMEOUT = 0.3
MARGIN = 0.5  # scheduling noise on a shared machine


class Hung:
    """A check that blocks until released, counting how often it was started."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1
        self.release.wait(10)


@pytest.fixture
def hung() -> Iterator[Hung]:
    """A hung check, released after the test so no thread outlives it."""
    check = Hung()
    yield check
    check.release.set()


def _ok() -> None:
    pass


def _broken() -> None:
    raise ConnectionRefusedError("postgres://user:secret@db:5432 refused")


def test_every_check_passing_reports_ok_with_latency() -> None:
    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", _ok)
    readiness.register("redis", _ok)
    results = readiness.run()
    assert [(r.name, r.ok, r.error) for r in results] == [
        ("postgresql", True, None),
        ("redis", True, None),
    ]
    assert all(r.latency_ms >= 0 for r in results)


def test_a_failing_check_reports_only_the_exception_type_never_its_message() -> None:
    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", _broken)
    (result,) = readiness.run()
    assert (result.ok, result.error) == (False, "ConnectionRefusedError")


def test_a_hung_check_is_reported_as_timeout_within_the_budget(hung: Hung) -> None:
    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", hung)
    readiness.register("redis", _ok)
    started = time.perf_counter()
    results = {r.name: r for r in readiness.run()}
    assert time.perf_counter() - started < TIMEOUT + MARGIN
    assert results["postgresql"].error == "timeout"
    assert results["redis"].ok


def test_concurrent_probes_share_one_run_of_a_hung_check_and_never_starve_the_others(
    hung: Hung,
) -> None:
    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", hung)
    readiness.register("redis", _ok)
    readiness.register("config", _ok)
    with ThreadPoolExecutor(max_workers=12) as pool:
        runs = list(pool.map(lambda _: readiness.run(), range(24)))
    for results in runs:
        assert {r.name: r.ok for r in results} == {
            "config": True,
            "postgresql": False,
            "redis": True,
        }
    assert hung.calls == 1


def test_a_check_runs_afresh_once_its_hung_run_finishes(hung: Hung) -> None:
    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", hung)
    assert readiness.run()[0].error == "timeout"
    hung.release.set()
    time.sleep(0.05)
    (result,) = readiness.run()
    assert result.ok
    assert hung.calls == 2


def _probe_in_child(readiness: Readiness, queue: multiprocessing.Queue[bool]) -> None:
    queue.put(readiness.run()[0].ok)


def test_a_forked_child_does_not_wait_on_a_run_left_in_its_parent() -> None:
    calls: list[int] = []

    def parent_hangs_child_passes() -> None:
        calls.append(1)
        if len(calls) == 1:
            time.sleep(3)  # only the parent's first run hangs

    readiness = Readiness(TIMEOUT)
    readiness.register("postgresql", parent_hangs_child_passes)
    assert readiness.run()[0].error == "timeout"
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[bool] = ctx.Queue()
    child = ctx.Process(target=_probe_in_child, args=(readiness, queue))
    child.start()
    assert queue.get(timeout=10) is True
    child.join(10)
    assert child.exitcode == 0


def test_registering_more_checks_than_threads_is_refused() -> None:
    readiness = Readiness(TIMEOUT)
    for i in range(MAX_CHECKS):
        readiness.register(f"check-{i}", _ok)
    readiness.register("check-0", _ok)  # replacing one is fine
    with pytest.raises(ValueError, match="at most"):
        readiness.register("one-too-many", _ok)
