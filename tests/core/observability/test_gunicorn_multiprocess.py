"""Real gunicorn with 2 workers: the master's metrics port sums every worker; the API port
has no /metrics; dead workers are marked.

gunicorn is started exactly as the chart's api container starts it (`gunicorn -c
python:app.gunicorn_conf app.wsgi:application`, config from the environment), with sync
workers so concurrent connections are spread over both processes.
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
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.support.processes import ManagedProcess, child_env, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
STALE_FILE = "counter_999999.db"
LIVEZ = {"route": "/livez", "method": "GET", "status": "200", "api_version": "none"}
#: The api container's command in charts/structured-api/templates/api-deployment.yaml.
CHART_COMMAND = ["gunicorn", "-c", "python:app.gunicorn_conf", "app.wsgi:application"]

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Gunicorn:
    """A running gunicorn master and where to reach it."""

    process: ManagedProcess
    url: str
    metrics_url: str
    multiproc_dir: Path

    def worker_pids(self) -> set[int]:
        """Pids of the master's live children, read from /proc."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        return {int(p) for p in children.read_text().split()}


def start_gunicorn(
    *, work: Path, metrics_port: int, workers: int = 2, **env: str
) -> tuple[ManagedProcess, int]:
    """Spawn the chart's command with `env` on top of the test environment; return its API port."""
    port = free_port()
    process = ManagedProcess(
        name="gunicorn",
        args=[sys.executable, "-m", *CHART_COMMAND],
        env=child_env(
            APP_ENV="test",
            PROMETHEUS_MULTIPROC_DIR=str(work / "prometheus"),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            GUNICORN_WORKERS=str(workers),
            GUNICORN_THREADS="1",
            METRICS_PORT=str(metrics_port),
            METRICS_ADDRESS="127.0.0.1",
            LOG_LEVEL="WARNING",
            **env,
        ),
        log_path=work / "gunicorn.log",
        cwd=ROOT,
        stop_timeout=30,
    ).start()
    return process, port


def wait_for_workers(process: ManagedProcess, url: str, count: int) -> None:
    """Until /livez answers and the master has `count` children."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")

    def ready() -> bool:
        process.check_alive()
        try:
            ok = httpx.get(url + "/livez", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False
        return ok and len(children.read_text().split()) == count

    wait_for(ready, timeout=60, interval=0.2, what="gunicorn workers")


@pytest.fixture(scope="module")
def gunicorn(
    database_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gunicorn]:
    """gunicorn, 2 sync workers, METRICS_ON_API_PORT unset (its default), a stale file."""
    work = tmp_path_factory.mktemp("gunicorn")
    (work / "prometheus").mkdir()
    (work / "prometheus" / STALE_FILE).write_bytes(b"\0" * 64)
    metrics_port = free_port()
    process, port = start_gunicorn(
        work=work, metrics_port=metrics_port, DATABASE_URL=database_url, REDIS_URL=redis_url
    )
    server = Gunicorn(
        process,
        f"http://127.0.0.1:{port}",
        f"http://127.0.0.1:{metrics_port}",
        work / "prometheus",
    )
    try:
        wait_for_workers(process, server.url, 2)
        yield server
    finally:
        process.stop()


def scrape(metrics_url: str) -> Samples:
    """Every sample of one scrape of `metrics_url`/metrics, keyed by name and label set."""
    response = httpx.get(metrics_url + "/metrics", timeout=5)
    assert response.status_code == 200, response.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def livez_count(samples: Samples) -> float:
    """sapi_http_requests_total for GET /livez 200."""
    return samples.get(("sapi_http_requests_total", frozenset(LIVEZ.items())), 0.0)


def livez_count_by_pid(multiproc_dir: Path) -> dict[int, float]:
    """The same counter read from each process's own file, before any summing."""
    counts: dict[int, float] = {}
    for file in multiproc_dir.glob("counter_*.db"):
        merged = MultiProcessCollector.merge([str(file)], accumulate=False)
        counts[pid_of(file)] = sum(
            s.value
            for metric in merged
            for s in metric.samples
            if s.name == "sapi_http_requests_total" and s.labels == LIVEZ
        )
    return counts


def hammer(url: str, count: int) -> None:
    """`count` GET /livez, 8 at a time, each on a new connection."""

    def one(_: int) -> int:
        return httpx.get(url + "/livez", timeout=10).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert set(pool.map(one, range(count))) == {200}


def pid_of(file: Path) -> int:
    """The pid in a multiprocess file name (`counter_123.db`, `gauge_livesum_123.db`)."""
    return int(file.stem.rsplit("_", 1)[1])


def listening_socket_inode(port: int) -> str:
    """Inode of the loopback TCP socket listening on `port` (/proc/net/tcp, proc(5))."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, state, inode = fields[1], fields[3], fields[9]
        if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
            return inode
    raise AssertionError(f"nothing listens on port {port}")


def holds_socket(pid: int, inode: str) -> bool:
    """True when one of `pid`'s file descriptors is that socket."""
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            if os.readlink(fd) == f"socket:[{inode}]":
                return True
        except OSError:
            continue
    return False


def test_stale_files_are_wiped_when_gunicorn_starts(gunicorn: Gunicorn) -> None:
    assert not (gunicorn.multiproc_dir / STALE_FILE).exists()


def test_metrics_port_sums_requests_served_by_both_workers(gunicorn: Gunicorn) -> None:
    before = livez_count(scrape(gunicorn.metrics_url))

    hammer(gunicorn.url, 100)

    after = livez_count(scrape(gunicorn.metrics_url))
    assert after == before + 100
    per_worker = livez_count_by_pid(gunicorn.multiproc_dir)
    # Both workers served some of them, and the scrape is the sum of their files.
    assert all(per_worker.get(pid, 0) > 0 for pid in gunicorn.worker_pids()), per_worker
    assert sum(per_worker.values()) == after


def test_api_port_answers_404_for_metrics_by_default(gunicorn: Gunicorn) -> None:
    response = httpx.get(gunicorn.url + "/metrics", timeout=5)

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "RES_NOT_FOUND"
    assert "sapi_http_requests_total" not in response.text


def test_only_the_master_holds_the_metrics_socket(gunicorn: Gunicorn) -> None:
    inode = listening_socket_inode(int(gunicorn.metrics_url.rsplit(":", 1)[1]))

    assert holds_socket(gunicorn.process.pid, inode)
    # post_fork closed the inherited copy: a worker cannot keep the port bound.
    assert [pid for pid in gunicorn.worker_pids() if holds_socket(pid, inode)] == []


def test_killed_worker_is_marked_dead_and_its_counts_are_kept(gunicorn: Gunicorn) -> None:
    hammer(gunicorn.url, 50)
    workers = gunicorn.worker_pids()
    # A worker that has served a request (so it has a live-gauge file to lose).
    victim = min(w for w in workers if (gunicorn.multiproc_dir / f"gauge_livesum_{w}.db").exists())
    live_gauge = gunicorn.multiproc_dir / f"gauge_livesum_{victim}.db"
    before = livez_count(scrape(gunicorn.metrics_url))

    os.kill(victim, signal.SIGKILL)
    wait_for(
        lambda: victim not in gunicorn.worker_pids() and len(gunicorn.worker_pids()) == 2,
        timeout=30,
        what="gunicorn to replace the killed worker",
    )

    # child_exit -> mark_process_dead removed the live gauge; counters stay summed, and
    # the master's server kept answering through the replacement.
    assert not live_gauge.exists()
    assert (gunicorn.multiproc_dir / f"counter_{victim}.db").exists()
    assert livez_count(scrape(gunicorn.metrics_url)) == before
    # The replacement serves too (and is not stopped mid-boot at teardown).
    (replacement,) = gunicorn.worker_pids() - workers

    def replacement_served() -> bool:
        hammer(gunicorn.url, 8)
        return (gunicorn.multiproc_dir / f"counter_{replacement}.db").exists()

    wait_for(replacement_served, timeout=30, what="the replacement worker to serve")
    gunicorn.process.check_alive()


def test_metrics_on_api_port_serves_the_sum_there_and_a_busy_metrics_port_stops_nothing(
    gunicorn: Gunicorn, database_url: str, redis_url: str, tmp_path: Path
) -> None:
    (tmp_path / "prometheus").mkdir()
    busy = int(gunicorn.metrics_url.rsplit(":", 1)[1])  # the first gunicorn's metrics port
    process, port = start_gunicorn(
        work=tmp_path,
        metrics_port=busy,
        workers=1,
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        METRICS_ON_API_PORT="true",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_workers(process, url, 1)
        before = livez_count(scrape(url))
        hammer(url, 5)
        after = livez_count(scrape(url))
    finally:
        process.stop()

    assert after == before + 5  # read from this gunicorn's own directory
    assert "api metrics server not started on 127.0.0.1" in process.output()
