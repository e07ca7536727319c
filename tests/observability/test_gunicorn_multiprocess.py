"""Real gunicorn with 2 workers: one /metrics scrape sums every worker; dead ones are marked.

The app is started the way the chart starts it (`gunicorn -c app/gunicorn_conf.py
app.wsgi:application`), with sync workers so concurrent connections are spread over
both processes.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
STALE_FILE = "counter_999999.db"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


@dataclass
class Gunicorn:
    """A running gunicorn master and where to reach it."""

    process: ManagedProcess
    url: str
    multiproc_dir: Path

    def worker_pids(self) -> set[int]:
        """Pids of the master's live children, read from /proc."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(p) for p in children.read_text().split()}


@pytest.fixture(scope="module")
def gunicorn(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """gunicorn, 2 sync workers, a multiprocess dir seeded with a stale file."""
    work = tmp_path_factory.mktemp("gunicorn")
    multiproc_dir = work / "prometheus"
    multiproc_dir.mkdir()
    (multiproc_dir / STALE_FILE).write_bytes(b"\0" * 64)
    port = free_port()
    env = child_env(
        APP_ENV="test",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PROMETHEUS_MULTIPROC_DIR=str(multiproc_dir),
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="2",
        GUNICORN_THREADS="1",
        LOG_LEVEL="WARNING",
    )
    process = ManagedProcess(
        name="gunicorn",
        args=[
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            "app/gunicorn_conf.py",
            "app.wsgi:application",
        ],
        env=env,
        log_path=work / "gunicorn.log",
        cwd=ROOT,
        stop_timeout=30,
    ).start()
    server = Gunicorn(process, f"http://127.0.0.1:{port}", multiproc_dir)

    def two_workers_answer() -> bool:
        process.check_alive()
        try:
            ok = httpx.get(server.url + "/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and len(server.worker_pids()) == 2

    wait_for(two_workers_answer, timeout=60, interval=0.2, what="gunicorn workers")
    try:
        yield server
    finally:
        process.stop()


def scrape(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of one /metrics scrape, keyed by name and label set."""
    text = httpx.get(url + "/metrics", timeout=5).text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def livez_count(samples: dict[tuple[str, frozenset[tuple[str, str]]], float]) -> float:
    """sapi_http_requests_total for GET /livez 200."""
    labels = {"route": "/livez", "method": "GET", "status": "200", "api_version": "none"}
    return samples.get(("sapi_http_requests_total", frozenset(labels.items())), 0.0)


def hammer(url: str, count: int) -> None:
    """`count` GET /livez, 8 at a time, each on a new connection."""

    def one(_: int) -> int:
        return httpx.get(url + "/livez", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def pid_of(file: Path) -> int:
    """The pid in a multiprocess file name (`counter_123.db`, `gauge_livesum_123.db`)."""
    return int(file.stem.rsplit("_", 1)[1])


def test_stale_files_are_wiped_when_gunicorn_starts(gunicorn: Gunicorn) -> None:
    assert not (gunicorn.multiproc_dir / STALE_FILE).exists()


def test_one_scrape_sums_requests_served_by_both_workers(gunicorn: Gunicorn) -> None:
    before = livez_count(scrape(gunicorn.url))

    hammer(gunicorn.url, 100)

    assert livez_count(scrape(gunicorn.url)) == before + 100
    writers = {pid_of(f) for f in gunicorn.multiproc_dir.glob("counter_*.db")}
    assert gunicorn.worker_pids() <= writers, "both workers should have served requests"


def test_killed_worker_is_marked_dead_and_its_counts_are_kept(gunicorn: Gunicorn) -> None:
    hammer(gunicorn.url, 50)
    workers = gunicorn.worker_pids()
    # A worker that has served a request (so it has a live-gauge file to lose).
    victim = min(w for w in workers if (gunicorn.multiproc_dir / f"gauge_livesum_{w}.db").exists())
    live_gauge = gunicorn.multiproc_dir / f"gauge_livesum_{victim}.db"
    before = livez_count(scrape(gunicorn.url))

    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in gunicorn.worker_pids() and len(gunicorn.worker_pids()) == 2,
        timeout=30,
        what="gunicorn to replace the killed worker",
    )

    # child_exit -> mark_process_dead removed the live gauge; counters stay summed.
    assert not live_gauge.exists()
    assert (gunicorn.multiproc_dir / f"counter_{victim}.db").exists()
    assert livez_count(scrape(gunicorn.url)) == before
    # The replacement serves too (and is not stopped mid-boot at teardown).
    (replacement,) = gunicorn.worker_pids() - workers

    def replacement_served() -> bool:
        hammer(gunicorn.url, 8)
        return (gunicorn.multiproc_dir / f"counter_{replacement}.db").exists()

    wait_for(replacement_served, timeout=30, what="the replacement worker to serve")
    gunicorn.process.check_alive()
