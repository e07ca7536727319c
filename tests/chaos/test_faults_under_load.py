"""Under steady load, Redis, then PostgreSQL, then a Celery worker go away and come back.

What the suite promises (docs/chaos-and-fuzzing.md):

* every write the API accepted (2xx) is in PostgreSQL afterwards;
* every job it accepted (202) reaches a final state, and its side effect (the generation
  row) exists exactly once;
* while a dependency is down, a request fails only with a documented 503 or 429 and its
  error code, answers well within the client timeout, and never gets a 500;
* `RECOVERY_S` after the dependency is back, every request succeeds again, with the same
  gunicorn workers (no restart, no worker replaced).

`CHAOS_DURATION` seconds of load run before, during and after each fault: 4 in the short
form `make test` runs, 20 under `make chaos`.
"""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any, Final

import pytest
from sqlalchemy import text

from app.ai.jobs.models import FINISHED, SUCCEEDED
from tests.chaos.conftest import System, chaos_duration, worker
from tests.chaos.load import CLIENT_TIMEOUT_S, Load, Outcome
from tests.support.processes import wait_for

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.timeout(900)]

#: Seconds after a dependency answers again by which every request succeeds.
RECOVERY_S: Final = 10.0
#: Longest a request may take during a fault (connect timeouts are 0.5-3 s).
ANSWER_BUDGET_S: Final = 8.0
#: Failures the API documents for a dependency outage or a limit (docs/errors.md).
DOCUMENTED: Final = {
    503: {
        "DB_CONNECTION_ERROR",
        "DB_TIMEOUT",
        "SYS_DEPENDENCY_UNAVAILABLE",
        "SYS_CACHE_UNAVAILABLE",
        "RATE_LIMITER_UNAVAILABLE",
    },
    429: {"RATE_LIMIT_EXCEEDED", "AI_TOKEN_LIMIT"},
}
#: A job redelivered after its worker died waits out the broker's visibility timeout
#: (60 s), or the sweep's lease expiry after Redis lost its queue (deadline + 60 s).
DRAIN_S: Final = 200.0


def _fault(
    name: str, load: Load, duration: float, down: Callable[[], None], up: Callable[[], None]
) -> dict[str, Any]:
    began = time.monotonic()
    down()
    time.sleep(duration)
    up()
    back = time.monotonic()
    time.sleep(max(duration, RECOVERY_S + 2))
    during = load.since(began)
    errors = [o for o in during if not o.ok]
    last_error = max((o.started + o.elapsed for o in errors), default=back)
    phase = {
        "fault": name,
        "began": began,
        "back": back,
        "requests": len(during),
        "errors": dict(Counter(f"{o.op} {o.status} {o.code}" for o in errors)),
        "recovered_after_s": round(max(0.0, last_error - back), 2),
    }
    print(json.dumps(phase))  # noqa: T201 - visible with -s while the run goes on
    return phase


def _undocumented(outcomes: list[Outcome]) -> list[Outcome]:
    return [o for o in outcomes if not o.ok and o.code not in DOCUMENTED.get(o.status or 0, ())]


def test_accepted_writes_and_jobs_survive_redis_postgres_and_worker_faults(
    system: System, record_property: Callable[[str, Any], None]
) -> None:
    duration = chaos_duration()
    gunicorn_workers = system.gunicorn_workers()
    report: list[dict[str, Any]] = []
    with ExitStack() as stack:
        first = stack.enter_context(worker(system, "worker-1"))
        load = Load(system.api_url, system.token).start()
        stack.callback(load.stop)
        time.sleep(duration)
        steady = load.since(0)
        assert steady and all(o.ok for o in steady), Counter((o.status, o.code) for o in steady)

        report.append(
            _fault("redis stopped", load, duration, system.redis.stop, system.redis.start)
        )
        report.append(
            _fault(
                "postgresql stopped", load, duration, system.postgres.stop, system.postgres.start
            )
        )
        # Slow provider answers first, so the worker dies holding jobs mid-call.
        system.sim.reset()
        system.sim.fault("latency", count=6, seconds=3)
        wait_for(lambda: len(system.sim.requests()) > 0, timeout=30, what="a job in flight")

        def kill_worker() -> None:
            os.killpg(first.process.pid, signal.SIGKILL)
            wait_for(lambda: not first.process.running, timeout=10, what="the worker to die")

        report.append(
            _fault(
                "celery worker SIGKILLed", load, duration, kill_worker,
                lambda: stack.enter_context(worker(system, "worker-2")),
            )
        )  # fmt: skip
        load.stop()
        drained = _assert_jobs_drain(system, load.jobs)
    report.append({"accepted notes": len(load.notes), "accepted jobs": len(load.jobs),
                   "jobs final after load stopped_s": round(drained, 1)})  # fmt: skip

    record_property("chaos", json.dumps(report))
    print(json.dumps(report, indent=2))  # noqa: T201 - the numbers docs/chaos-and-fuzzing.md quotes
    outcomes = load.since(0)
    assert not _undocumented(outcomes), Counter(
        (o.op, o.status, o.code) for o in _undocumented(outcomes)
    )
    slowest = max(outcomes, key=lambda o: o.elapsed)
    assert slowest.elapsed < ANSWER_BUDGET_S < CLIENT_TIMEOUT_S, slowest
    _assert_notes_stored(system, load.notes)
    _assert_jobs_ran_once(system, load.jobs)
    # Recovered: from RECOVERY_S after the dependency is back until the next fault, no error.
    faults = report[:-1]
    ends = [p["began"] for p in faults[1:]] + [float("inf")]
    for phase, end in zip(faults, ends, strict=True):
        window = [o for o in load.since(phase["back"] + RECOVERY_S) if o.started + o.elapsed < end]
        late = [o for o in window if not o.ok]
        assert not late, (phase["fault"], late[:5])
    assert system.gunicorn_workers() == gunicorn_workers  # nothing restarted or replaced
    log = system.api.output()
    assert "WORKER TIMEOUT" not in log and "SYS_INTERNAL_ERROR" not in log


def _assert_notes_stored(system: System, notes: dict[str, str]) -> None:
    assert notes
    with system.engine.connect() as conn:
        rows = dict(
            conn.execute(
                text("SELECT id::text, title FROM custom_notes WHERE id = ANY(:ids)"),
                {"ids": [uuid.UUID(i) for i in notes]},
            ).all()
        )
    assert rows == notes


def _job_rows(system: System, jobs: set[str]) -> dict[str, tuple[str, int]]:
    with system.engine.connect() as conn:
        found = conn.execute(
            text(
                "SELECT j.id::text, j.status, count(g.id) FROM ai_job j "
                "LEFT JOIN ai_generation g ON g.job_id = j.id "
                "WHERE j.id = ANY(:ids) GROUP BY j.id, j.status"
            ),
            {"ids": [uuid.UUID(i) for i in jobs]},
        ).all()
    return {job_id: (status, n) for job_id, status, n in found}


def _assert_jobs_drain(system: System, jobs: set[str]) -> float:
    def finished() -> bool:
        rows = _job_rows(system, jobs)
        return len(rows) == len(jobs) and all(s in FINISHED for s, _ in rows.values())

    return wait_for(finished, timeout=DRAIN_S, interval=1, what="every accepted job to finish")


def _assert_jobs_ran_once(system: System, jobs: set[str]) -> None:
    assert jobs
    rows = _job_rows(system, jobs)
    assert set(rows) == jobs
    outcome = Counter((status, generations) for status, generations in rows.values())
    assert outcome == Counter({(SUCCEEDED, 1): len(jobs)}), outcome
