"""Per-request cost of Prometheus metrics and OpenTelemetry tracing, against the same app
with both off, in the same run.

    uv run python bench/observability_cost.py                       # 3 passes x 5 rounds
    uv run python bench/observability_cost.py --requests 500 --passes 1 --json out.json

Each variant runs in its own process (OTel allows one tracer provider per process) with
the project's full app and pipeline, driven in-process through the WSGI interface by
Flask's test client on one unversioned route that touches nothing else, so the only
difference between variants is the observability seam:

    off             METRICS_ENABLED=false, TRACING_ENABLED=false
    metrics         metrics, single-process registry
    metrics-mp      metrics in multiprocess mode (mmap files, as under gunicorn)
    tracing-10pct   tracing, parentbased_traceidratio 0.1 (the chart's default)
    tracing-all     tracing, always_on
    both            metrics-mp + tracing-10pct (the production defaults)

Spans go through a real BatchSpanProcessor to an exporter that drops them (no network).
Variants are interleaved pass by pass and the median round is reported, because this
machine is shared. PostgreSQL and Redis come from the wheels (scripts/devstack) unless
DATABASE_URL / REDIS_URL are set. Not a test: numbers depend on the machine;
docs/observability.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

VARIANTS: dict[str, dict[str, str]] = {
    "off": {"METRICS_ENABLED": "false", "TRACING_ENABLED": "false"},
    "metrics": {"METRICS_ENABLED": "true", "TRACING_ENABLED": "false"},
    "metrics-mp": {"METRICS_ENABLED": "true", "TRACING_ENABLED": "false", "MULTIPROC": "1"},
    "tracing-10pct": {
        "METRICS_ENABLED": "false",
        "TRACING_ENABLED": "true",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
    "tracing-all": {
        "METRICS_ENABLED": "false",
        "TRACING_ENABLED": "true",
        "OTEL_TRACES_SAMPLER": "always_on",
    },
    "both": {
        "METRICS_ENABLED": "true",
        "TRACING_ENABLED": "true",
        "MULTIPROC": "1",
        "OTEL_TRACES_SAMPLER": "parentbased_traceidratio",
        "OTEL_TRACES_SAMPLER_ARG": "0.1",
    },
}
ROUTE = "/bench/observability"


def run_variant(requests: int, rounds: int) -> dict[str, Any]:
    """Inside a variant process: build the app from the environment, time the rounds."""
    from flask import Flask
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from app import create_app
    from app.config import Settings
    from app.core.observability import tracing

    class DropExporter(SpanExporter):
        """Accepts and forgets spans: the processor's cost without the network's."""

        def __init__(self) -> None:
            self.exported = 0

        def export(self, spans: Sequence[Any]) -> SpanExportResult:
            self.exported += len(spans)
            return SpanExportResult.SUCCESS

    settings = Settings()
    exporter = DropExporter()
    if settings.tracing_enabled:
        provider = TracerProvider(
            sampler=tracing.build_sampler(
                settings.otel_traces_sampler, settings.otel_traces_sampler_arg
            )
        )
        provider.add_span_processor(BatchSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
    app: Flask = create_app(settings)
    app.add_url_rule(ROUTE, "bench_observability", lambda: {"ok": True})
    client = app.test_client()
    for _ in range(min(requests, 300)):  # warm up: imports, first-request paths, caches
        response = client.get(ROUTE)
        assert response.status_code == 200, (response.status_code, response.get_data(as_text=True))
    per_request_us = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(requests):
            client.get(ROUTE)
        per_request_us.append((time.perf_counter() - started) / requests * 1e6)
    tracing.shutdown()
    return {"per_request_us": per_request_us, "spans_exported": exporter.exported}


@contextmanager
def services() -> Iterator[dict[str, str]]:
    """DATABASE_URL and REDIS_URL: from the environment, or servers started from wheels."""
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        yield {"DATABASE_URL": os.environ["DATABASE_URL"], "REDIS_URL": os.environ["REDIS_URL"]}
        return
    from devstack import PostgresServer, RedisServer

    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="sapi-obs-bench-")))
        pg = PostgresServer(tmp / "pg")
        pg.start()
        stack.callback(pg.stop)
        rd = RedisServer(tmp / "redis")
        rd.start()
        stack.callback(rd.stop)
        subprocess.run(
            [sys.executable, "-m", "alembic", "upgrade", "head"],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": pg.url},
            check=True,
            capture_output=True,
        )
        yield {"DATABASE_URL": pg.url, "REDIS_URL": rd.url}


def spawn(variant: str, urls: dict[str, str], requests: int, rounds: int) -> dict[str, Any]:
    """Run one variant in a fresh process and return its measurements."""
    env = {
        **os.environ,
        **urls,
        "APP_ENV": "test",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        # The default per-IP limit would turn a benchmark loop into 429s after a minute's
        # quota; every variant runs the same pipeline without it.
        "RATE_LIMIT_DEFAULT_ENABLED": "false",
    }
    settings = dict(VARIANTS[variant])
    with tempfile.TemporaryDirectory(prefix="sapi-prom-") as multiproc:
        if settings.pop("MULTIPROC", None):
            env["PROMETHEUS_MULTIPROC_DIR"] = multiproc
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(settings)
        out = subprocess.run(
            [sys.executable, __file__, "--child", "--requests", str(requests),
             "--rounds", str(rounds)],
            env=env, capture_output=True, text=True, check=False, timeout=900,
        )  # fmt: skip
    if out.returncode != 0:
        raise SystemExit(f"variant {variant} failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Parse arguments; as parent, run every variant interleaved and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds per variant per pass")
    parser.add_argument("--passes", type=int, default=3, help="interleaved passes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args.requests, args.rounds)))
        return 0

    rounds: dict[str, list[float]] = {name: [] for name in VARIANTS}
    spans: dict[str, int] = dict.fromkeys(VARIANTS, 0)
    with services() as urls:
        for _ in range(args.passes):
            for name in VARIANTS:
                result = spawn(name, urls, args.requests, args.rounds)
                rounds[name] += result["per_request_us"]
                spans[name] += result["spans_exported"]
    base = statistics.median(rounds["off"])
    rows = []
    for name, values in rounds.items():
        median = statistics.median(values)
        rows.append(
            {
                "variant": name,
                "median_us": round(median, 1),
                "min_us": round(min(values), 1),
                "cost_us": round(median - base, 1),
                "ratio_vs_off": round(median / base, 3),
                "spans_exported": spans[name],
            }
        )
    print(f"{args.passes} passes x {args.rounds} rounds x {args.requests} requests per variant")
    print(f"{'variant':<15}{'median us':>11}{'min us':>9}{'cost us':>9}{'x off':>8}{'spans':>9}")
    for row in rows:
        print(
            f"{row['variant']:<15}{row['median_us']:>11.1f}{row['min_us']:>9.1f}"
            f"{row['cost_us']:>9.1f}{row['ratio_vs_off']:>8.3f}{row['spans_exported']:>9}"
        )
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"json": str(args.json)},
                                         "results": rows}, indent=2))  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
