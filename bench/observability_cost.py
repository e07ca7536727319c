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
All variant processes are started first and driven round-robin, one round each in
turn, and the median round is reported: load on a shared machine drifts, and this way
it hits every variant alike. PostgreSQL and Redis come from the wheels (scripts/devstack) unless
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


def serve_variant(requests: int) -> None:
    """Inside a variant process: build the app, warm up, then run one timed round per
    `round` line on stdin (one JSON line out each); `quit` reports the spans exported."""
    from flask import Flask
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        SpanExporter,
        SpanExportResult,
    )

    from app.core.observability import tracing
    from app.factory import create_app
    from app.settings import Settings

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
        assert response.status_code == 200, (response.status_code, response.get_data(True))
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        if line.strip() != "round":
            break
        started = time.perf_counter()
        for _ in range(requests):
            client.get(ROUTE)
        elapsed = time.perf_counter() - started
        print(json.dumps({"per_request_us": elapsed / requests * 1e6}), flush=True)
    tracing.shutdown()
    print(json.dumps({"spans_exported": exporter.exported}), flush=True)


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


class Variant:
    """A variant's process, driven round by round over its stdin/stdout."""

    def __init__(self, name: str, urls: dict[str, str], requests: int) -> None:
        self.name = name
        self._multiproc = tempfile.TemporaryDirectory(prefix="sapi-prom-")
        env = {
            **os.environ,
            **urls,
            "APP_ENV": "test",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            # The default per-IP limit would turn a benchmark loop into 429s after a
            # minute's quota; every variant runs the same pipeline without it.
            "RATE_LIMIT_DEFAULT_ENABLED": "false",
        }
        settings = dict(VARIANTS[name])
        if settings.pop("MULTIPROC", None):
            env["PROMETHEUS_MULTIPROC_DIR"] = self._multiproc.name
        else:
            env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(settings)
        self.proc = subprocess.Popen(
            [sys.executable, __file__, "--child", "--requests", str(requests)],
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        self.rounds: list[float] = []
        self.spans = 0

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SystemExit(f"variant {self.name} exited with {self.proc.wait()}")
        reply: dict[str, Any] = json.loads(line)
        return reply

    def ready(self) -> None:
        """Wait until the app is built and warmed up."""
        self._reply()

    def run_round(self) -> None:
        """Time one round in the child."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("round\n")
        self.proc.stdin.flush()
        self.rounds.append(self._reply()["per_request_us"])

    def finish(self) -> None:
        """Stop the child and collect its span count."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        self.spans = self._reply()["spans_exported"]
        self.proc.wait(timeout=60)
        self._multiproc.cleanup()


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
        serve_variant(args.requests)
        return 0

    # All variants are started and warmed up first, then driven round-robin, one round at
    # a time, so load that drifts on a shared machine hits every variant alike.
    with services() as urls:
        variants = [Variant(name, urls, args.requests) for name in VARIANTS]
        for variant in variants:
            variant.ready()
        for index in range(args.passes * args.rounds):
            order = variants[index % len(variants) :] + variants[: index % len(variants)]
            for variant in order:
                variant.run_round()
        for variant in variants:
            variant.finish()
    rounds = {v.name: v.rounds for v in variants}
    spans = {v.name: v.spans for v in variants}
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
    print(f"{args.passes * args.rounds} interleaved rounds x {args.requests} requests per variant")
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
