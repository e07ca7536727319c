"""A policy written through the admin API is enforced by EVERY gunicorn worker within 1 s,
and deleting it stops enforcement within 1 s.

Each worker is reached through a keep-alive connection proven (via /proc) to be held by
that worker, so "every worker" is measured, not assumed.
"""

from __future__ import annotations

import http.client
import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.ratelimit.live import LiveApi, get, live_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

NAME = "propagation"
PATH = "/.well-known/jwks.json"
LIMIT_NAME = f"{NAME}.jwks.1h"
DEADLINE = 1.0  # seconds, from the admin API's answer
SPEC: dict[str, Any] = {
    "mode": "Enforce",
    "rules": [
        {
            "name": "jwks",
            "key": "header:X-Probe",
            "match": {"paths": [PATH], "methods": ["GET"]},
            "limits": [{"requests": 1, "window": "1h"}],
        }
    ],
}
_probe = itertools.count()


@pytest.fixture(scope="module")
def api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """gunicorn, 2 workers, on a dedicated database."""
    with live_api(database_url, redis_url, tmp_path_factory.mktemp("propagation")) as server:
        yield server


def enforced(conn: http.client.HTTPConnection) -> bool:
    """Does the worker behind `conn` apply the policy? (a fresh probe key each time)"""
    status, headers, _ = get(conn, PATH, {"X-Probe": f"p{next(_probe)}"})
    assert status == 200, status
    return LIMIT_NAME in headers.get("RateLimit-Policy", "")


def refuses_a_second_request(conn: http.client.HTTPConnection) -> bool:
    """Two requests with one probe key: the second is refused when the policy applies."""
    key = {"X-Probe": f"twice{next(_probe)}"}
    get(conn, PATH, key)
    return get(conn, PATH, key)[0] == 429


def seconds_until(
    conditions: dict[int, Callable[[], bool]], since: float, limit: float = 10.0
) -> dict[int, float]:
    """Poll each worker's condition every 10 ms; seconds from `since` until each held."""
    took: dict[int, float] = {}
    while len(took) < len(conditions):
        for pid, condition in conditions.items():
            if pid not in took and condition():
                took[pid] = time.perf_counter() - since
        assert time.perf_counter() - since < limit, f"not everywhere after {limit} s: {took}"
        time.sleep(0.01)
    return took


def test_a_policy_is_enforced_by_every_worker_within_1s_and_deletion_stops_it_within_1s(
    api: LiveApi, record_property: Callable[[str, Any], None]
) -> None:
    workers = api.pinned_connections()
    assert len(workers) == 2
    for conn in workers.values():
        assert not enforced(conn)
        assert not refuses_a_second_request(conn)

    api.put_policy(NAME, SPEC)
    written = time.perf_counter()
    took = seconds_until(
        {pid: (lambda c=conn: enforced(c)) for pid, conn in workers.items()}, written
    )
    record_property("policy_enforced_by_all_workers_s", round(max(took.values()), 3))
    assert max(took.values()) < DEADLINE, took
    for conn in workers.values():
        assert refuses_a_second_request(conn)

    api.delete_policy(NAME)
    deleted = time.perf_counter()
    gone = seconds_until(
        {pid: (lambda c=conn: not enforced(c)) for pid, conn in workers.items()}, deleted
    )
    record_property("policy_lifted_by_all_workers_s", round(max(gone.values()), 3))
    assert max(gone.values()) < DEADLINE, gone
    for conn in workers.values():
        assert not refuses_a_second_request(conn)
        conn.close()
