"""Leases under a shared hot key: two gunicorn servers (2 workers each, four processes)
on one Redis, 64 keep-alive clients on one global budget large enough to lease.

Together they must never admit more than GCRA allows (app/ratelimit/lease.lua), lose no
more than the documented under-admission (docs/rate-limiting.md, "Leases"), and
actually lease: far fewer script calls reach Redis than requests are admitted.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import redis

from app.ratelimit.leases import QUANTITY_SHARE
from tests.ratelimit.live import ROOT, LiveApi, live_api
from tests.ratelimit.test_accuracy import enforce_everywhere, global_policy
from tests.support.processes import ManagedProcess, free_port, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

CLIENTS = 64
PROCESSES = 4  # two servers x two workers


@pytest.fixture(scope="module")
def servers(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[LiveApi, str]]:
    """The accuracy suite's server and a second gunicorn with the same settings."""
    work = tmp_path_factory.mktemp("leases")
    (work / "a").mkdir()
    with live_api(database_url, redis_url, work / "a") as api:
        port = free_port()
        (work / "b" / "prometheus").mkdir(parents=True)
        env = {
            **api.process.env,
            "GUNICORN_BIND": f"127.0.0.1:{port}",
            "PROMETHEUS_MULTIPROC_DIR": str(work / "b" / "prometheus"),
        }
        second = ManagedProcess(
            name="gunicorn-b",
            args=[
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                "app/gunicorn_conf.py",
                "app.wsgi:application",
            ],
            env=env,
            log_path=work / "b" / "gunicorn.log",
            cwd=ROOT,
            stop_timeout=30,
        ).start()
        url = f"http://127.0.0.1:{port}"
        try:

            def ready() -> bool:
                second.check_alive()
                try:
                    return httpx.get(url + "/readyz", timeout=2).status_code == 200
                except httpx.HTTPError:
                    return False

            wait_for(
                ready,
                timeout=90,
                interval=0.2,
                what="the second server",
            )
            yield api, url
        finally:
            second.stop()


def script_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{c}", {}).get("calls", 0)) for c in ("evalsha", "eval"))


def test_two_servers_on_one_hot_key_never_admit_more_than_the_budget(
    servers: tuple[LiveApi, str],
) -> None:
    api, second = servers
    n, path, seconds, enough = 1000, "/versions", 60.0, 4 * CLIENTS
    interval = 3600 / n  # GCRA: one more permit every 3.6 s after the first n
    enforce_everywhere(api, "leases-hot", global_policy(path, {"requests": n, "window": "1h"}))
    wait_for(
        lambda: (
            httpx.get(second + path, timeout=5).headers.get("RateLimit-Policy", "").find("q=1000")
            >= 0
        ),
        timeout=10,
        interval=0.05,
        what="the policy in the second server",
    )
    limiter = redis.Redis.from_url(api.settings.redis_url)
    time.sleep(0.6)  # any lease the probes above took has expired (RATE_LIMIT_LEASE_MS 250)
    for key in limiter.scan_iter(match="sapi:rl:*:leases-hot:*"):
        limiter.delete(key)  # the probes above took a few permits: start from a full budget
    calls_before = script_calls(limiter)
    admitted: list[int] = []  # RateLimit r= of each 200
    refused: list[str | None] = []  # Retry-After of each 429
    lock = threading.Lock()
    stop_at: list[float] = []
    start = threading.Barrier(CLIENTS, action=lambda: stop_at.append(time.perf_counter() + seconds))

    def client(i: int) -> None:
        base = api.url if i % 2 else second
        with httpx.Client(base_url=base, timeout=30) as http:
            start.wait()
            # Until the budget is spent and every client has seen refusals (or a minute).
            while time.perf_counter() < stop_at[0] and len(refused) < enough:
                r = http.get(path)
                assert r.status_code in (200, 429), r.text
                with lock:
                    if r.status_code == 200:
                        remaining = r.headers["RateLimit"].partition(";r=")[2].partition(";")[0]
                        admitted.append(int(remaining))
                    else:
                        refused.append(r.headers.get("Retry-After"))

    with ThreadPoolExecutor(CLIENTS) as pool:
        for f in [pool.submit(client, i) for i in range(CLIENTS)]:
            f.result()
    elapsed = time.perf_counter() - (stop_at[0] - seconds)
    assert len(refused) >= enough, "the budget was not spent within a minute"
    calls = script_calls(limiter) - calls_before

    # Never more than GCRA allows over the run: the budget, plus what refilled meanwhile.
    assert len(admitted) <= n + 1 + math.floor(elapsed / interval), len(admitted)
    # Under-admission at most one lease per process (each at most n / QUANTITY_SHARE).
    assert len(admitted) >= n - PROCESSES * (n // QUANTITY_SHARE), len(admitted)
    assert len(refused) > 0 and all(r is not None and int(r) >= 1 for r in refused)
    assert all(0 <= r <= n for r in admitted)
    # Leased: admissions took fewer script calls than one each (a refusal takes one). How
    # many fewer depends on each process's rate: on a loaded 2-core machine about 1.8
    # admissions per call, far more when the processes are busier (docs/rate-limiting.md).
    assert calls < len(refused) + 0.8 * len(admitted), (calls, len(admitted), len(refused))
