"""Redis Sentinel failover gap: seconds of errors the API's clients see when the primary dies.

    uv run python bench/redis_failover.py                        # 3 rounds, down-after 1000 ms
    uv run python bench/redis_failover.py --rounds 5 --down-after-ms 5000 --json out.json

Everything real, on loopback (tests/chaos/sentinel_system.py): PostgreSQL, a Redis
primary with two replicas and three sentinels from the dev stack's redis-server binary,
gunicorn (2 workers x 4 threads), a prefork Celery worker and beat, all on
`REDIS_URL=redis+sentinel://...`. Steady load: three clients writing notes, reading
them back and submitting a job every third turn, and two clients reading `GET /v1/notes`
every 50 ms. Each round SIGKILLs the current primary, waits for the sentinels to promote
a replica, lets the load run on, then restarts the killed node (Sentinel makes it a
replica of the new primary) before the next round.

Per round: `promoted` (kill -> a majority of sentinels name the new master), `gap`
(first to last failed request, the reads' figure: they sample every 50 ms), errors by
code, the slowest answer of any request. The gap is bounded below by Sentinel's
`down-after-milliseconds` (detection) and grows with it. Not a test;
docs/performance.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "operator")]

from tests.chaos.load import Load  # noqa: E402
from tests.chaos.sentinel_system import (  # noqa: E402
    ReadLoad,
    SentinelSystem,
    failover,
    failover_figures,
    sentinel_system,
)


def _round(system: SentinelSystem, settle: float) -> dict[str, Any]:
    load = Load(system.api_url, system.token).start()
    reads = ReadLoad(system.api_url, system.token, threads=2).start()
    try:
        time.sleep(2.0)
        old = system.ha.primary()
        report = failover(system, load, settle=settle)
        report["reads"] = failover_figures(reads, report["killed_at"])
    finally:
        load.stop()
        reads.stop()
    old.start()  # back as a replica of the new primary (Sentinel reconfigures it)
    system.ha.wait_until_ready()
    report.pop("killed_at")
    report["jobs_accepted"] = len(load.jobs)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the rounds; print a table (and write --json)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--down-after-ms", type=int, default=1000)
    parser.add_argument("--settle", type=float, default=8.0, help="load after each promotion")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    rounds: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    with (
        tempfile.TemporaryDirectory(prefix="sapi-failover-") as tmp,
        sentinel_system(Path(tmp), down_after_ms=args.down_after_ms) as system,
    ):
        for n in range(args.rounds):
            result = _round(system, args.settle)
            rounds.append(result)
            reads = result["reads"]
            slowest = max(reads["slowest_s"], result["slowest_s"])
            print(
                f"round {n + 1}: promoted after {result['promoted_after_s']:.2f} s, "
                f"gap {reads['gap_s']:.2f} s ({reads['errors']} of {reads['requests']} reads "
                f"failed: {reads['codes']}), all requests: {result['errors']} errors "
                f"{result['codes']}, slowest answer {slowest:.2f} s"
            )
    summary = {
        "down_after_ms": args.down_after_ms,
        "rounds": len(rounds),
        "promoted_s_median": statistics.median(r["promoted_after_s"] for r in rounds),
        "gap_s_median": statistics.median(r["reads"]["gap_s"] for r in rounds),
        "gap_s_max": max(r["reads"]["gap_s"] for r in rounds),
        "slowest_answer_s": max(max(r["reads"]["slowest_s"], r["slowest_s"]) for r in rounds),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cpus": os.cpu_count(),
    }
    print(json.dumps(summary))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "rounds": rounds}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
