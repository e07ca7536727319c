"""Single-flight across processes: concurrent misses on two gunicorn workers compute once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from tests.cache.conftest import COUNTER
from tests.ratelimit.live import LiveApi, cpu_ticks, live_api

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 32


@pytest.fixture(scope="module")
def api(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveApi]:
    """gunicorn, 2 workers x 8 threads, serving the probe routes."""
    with live_api(
        database_url,
        redis_url,
        tmp_path_factory.mktemp("single-flight"),
        threads=8,
        wsgi="tests.cache.probe_wsgi:application",
    ) as server:
        yield server


def test_32_concurrent_misses_across_two_workers_compute_once(api: LiveApi) -> None:
    workers = sorted(api.worker_pids())
    ticks = {pid: cpu_ticks(pid) for pid in workers}
    start = threading.Barrier(CLIENTS)
    headers = {"Connection": "close"}

    def one(_: int) -> tuple[int, str, str]:
        start.wait()
        r = httpx.get(api.url + "/v1/cache-probe/slow", headers=headers, timeout=30)
        return r.status_code, r.text.split('"meta"')[0], r.headers.get("X-Cache", "")

    with ThreadPoolExecutor(CLIENTS) as pool:
        results = list(pool.map(one, range(CLIENTS)))
    assert {status for status, _, _ in results} == {200}
    assert len({body for _, body, _ in results}) == 1  # everyone got the same data
    assert sorted(x for _, _, x in results).count("MISS") == 1
    # The view ran once in all: its computation counter lives in Redis.
    counter = redis.Redis.from_url(api.settings.redis_url).get(COUNTER + "slow")
    assert counter == b"1"
    for pid in workers:  # both workers took requests (and waited on the other's lock)
        assert cpu_ticks(pid) - ticks[pid] >= 2, f"worker {pid} served nothing"
