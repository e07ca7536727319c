"""Limiter throughput on one Redis vs a Redis Cluster (3 primaries + 3 replicas), same run.

    uv run python bench/limiter_topologies.py                  # 8 s per scenario
    uv run python bench/limiter_topologies.py --seconds 20 --json out.json

Everything real, on loopback: one redis-server and a 6-node Cluster from the dev stack's
binary (scripts/devstack/redis_cluster.py). `PROCESSES` processes x `THREADS` threads
(the shape of gunicorn's workers) call the limiter's store exactly as a request does
(`LimiterStore.evaluate_gated`, one GCRA limit per call, callers spread over 10,000
users so keys spread over every slot) for `--seconds`; the per-call latency is timed in
each thread. Scenarios:

* `single`: one Redis, the per-thread connection (`ThreadCommands`);
* `cluster`: the Cluster, one EVALSHA per call routed by slot (`RedisCluster`);
* `cluster-split`: the Cluster, each call also charging a `global` bucket in another
  slot (two script calls per request, app/ratelimit/slots.py).

On a 2-core machine client CPU, not Redis, is the ceiling: the figures compare what one
limiter call costs a worker on each topology, not how far a Cluster scales out; a
Cluster's capacity grows with its primaries, one node's does not. Not a test;
docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from devstack.redis_cluster import RedisClusterGroup  # noqa: E402
from devstack.redis_server import RedisServer  # noqa: E402

from app.hotstore.client import (  # noqa: E402
    HotClient,
    cluster_client,
    node_client,
)
from app.hotstore.slots import tag  # noqa: E402
from app.ratelimit.store import LimiterStore  # noqa: E402
from app.settings import Settings  # noqa: E402

PROCESSES = 2
THREADS = 4
USERS = 10_000
LIMIT = (60.0, 60_000.0)  # interval_ms, horizon_ms: 1000 per minute, never refusing here


def _store(target: str) -> LimiterStore:
    if target.startswith("redis://"):
        client = node_client(target, timeout=0.5, sentinel_password=None)
        return LimiterStore(HotClient.of(client))
    settings = Settings(app_env="test", redis_cluster_nodes=target)
    return LimiterStore(HotClient(lambda: cluster_client(settings, timeout=0.5), cluster=True))


def _worker(target: str, split: bool, seconds: float, out: Any) -> None:
    store = _store(target)
    latencies: list[float] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def run(n: int) -> None:
        mine: list[float] = []
        i = n
        while (started := time.perf_counter()) < stop_at:
            i += THREADS * PROCESSES
            keys = [f"sapi:rl:{tag(f'u:{i % USERS}')}:bench:each:1m"]
            args: list[float | int] = [*LIMIT, 1, 0, 1]
            if split:
                keys.append(f"sapi:rl:{tag('g')}:bench:all:1m")
                args.extend((0.001, 60_000.0, 1, 0, 1))
            store.evaluate(keys, args)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    out.put(latencies)


def scenario(target: str, *, split: bool, seconds: float) -> dict[str, Any]:
    """Calls per second and latency percentiles of `PROCESSES` x `THREADS` callers."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=_worker, args=(target, split, seconds, queue)) for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    latencies = [x for _ in procs for x in queue.get()]
    for p in procs:
        p.join()
    latencies.sort()

    def pct(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e6)

    return {
        "calls_per_s": round(len(latencies) / seconds),
        "p50_us": pct(0.50),
        "p99_us": pct(0.99),
        "mean_us": round(statistics.fmean(latencies) * 1e6),
    }


def main(argv: list[str] | None = None) -> int:
    """Run every scenario once; print a table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    results: dict[str, dict[str, Any]] = {}
    with (
        tempfile.TemporaryDirectory(prefix="sapi-topologies-") as tmp,
        RedisServer(Path(tmp) / "single") as single,
        RedisClusterGroup(Path(tmp) / "cluster") as cluster,
    ):
        results["single"] = scenario(single.url, split=False, seconds=args.seconds)
        results["cluster"] = scenario(cluster.seeds, split=False, seconds=args.seconds)
        results["cluster-split"] = scenario(cluster.seeds, split=True, seconds=args.seconds)
    report = {
        "processes": PROCESSES,
        "threads": THREADS,
        "seconds": args.seconds,
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "results": results,
    }
    print(f"{'scenario':<15}{'calls/s':>10}{'p50 us':>10}{'p99 us':>10}{'mean us':>10}")
    for name, r in results.items():
        print(
            f"{name:<15}{r['calls_per_s']:>10}{r['p50_us']:>10}{r['p99_us']:>10}{r['mean_us']:>10}"
        )
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
