"""`make bench`: every pipeline scenario under the same gunicorn and wrk, then the other
benchmarks, all results into bench/results/ (docs/performance.md explains them).

    uv run python -m bench.run                          # what `make bench` runs
    uv run python -m bench.run --duration 1 --warmup 1 --skip-others --out /tmp/b --no-docs

Each scenario gets a fresh gunicorn (2 workers x 4 gthread threads, as
app/gunicorn_conf.py, for every app alike) on loopback, a warm-up, then a timed wrk run
with bench/wrk.lua; rounds alternate the scenarios so noise from other processes on a
shared machine hits all of them, and each keeps its best round. Written: pipeline.md,
pipeline.json, pipeline.png, the block of docs/performance.md that quotes the table, and
`<script>.txt` / `<script>.json` for each other bench/ script found (auth, observability,
AI gateway, operator, Redis round trips of the pipeline, LiteLLM head to head).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Final

import httpx

from bench import fixtures, load, report
from bench import run_pipeline as pipeline
from bench.fixtures import ROOT, Fixtures
from bench.load import Load, Measurement

RESULTS: Final = ROOT / "bench" / "results"
DOC: Final = ROOT / "docs" / "performance.md"
OURS: Final = "bench.apps.suite:application"
PROMPT: Final = "summarise the meeting notes in three short bullet points please"
#: Other engineers' scripts: file -> arguments for a bounded run (each writes --json).
OTHERS: Final[dict[str, list[str]]] = {
    "run_pipeline.py": ["--duration", "5", "--warmup", "1", "--connections", "32"],
    "auth_cost.py": ["--requests", "1000", "--passes", "3"],
    "observability_cost.py": ["--requests", "1000", "--rounds", "3", "--passes", "3"],
    "ai_gateway.py": ["--requests", "300", "--passes", "3"],
    "operator_latency.py": ["--edits", "20", "--cold", "100"],
    "redis_failover.py": ["--rounds", "3"],
    "litellm.py": [],  # its defaults: 3 rounds, ~4 minutes (LiteLLM from PyPI, cached)
}


@dataclass
class Scenario:
    """One row of the table: an app, the request wrk repeats, how to tell it is ready."""

    name: str
    wsgi: str
    load: Load
    ready: str = "/livez"  # a GET answering 200 once a worker is up
    ready_headers: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    etag: bool = False  # ask once, then send If-None-Match with the ETag it got

    @property
    def request(self) -> str:
        """`METHOD /path` for the table (ids shortened)."""
        path = self.load.path
        for part in path.split("/"):
            if len(part) == 36 and part.count("-") == 4:
                path = path.replace(part, "{id}")
        suffix = " (If-None-Match)" if self.etag else ""
        return f"{self.load.method} {path}{suffix}"


def scenarios(fx: Fixtures, ratio: str) -> list[Scenario]:
    """Bare Flask and the usual stack (from run_pipeline.py), then ours."""
    theirs = {
        s.name: s
        for s in pipeline.scenarios(fx.env, fx.env["SECRET_KEY"], fx.env["BENCH_JWT_SECRET"], ratio)
    }
    bare, usual = theirs["bare flask"], theirs[f"usual stack, sampling {ratio}"]
    auth = {"Authorization": fx.bearer}
    # The usual stack's token names the same user, so its peers read and write the same
    # user's notes in the same table.
    usual_auth = {"Authorization": f"Bearer {usual_token(fx)}"}
    note = f"/v1/notes/{fx.note_id}"
    cached = f"/v1/bench/notes/{fx.note_id}"
    body = json.dumps({"title": "written under load", "body": "a short note " * 4})
    ai = json.dumps({"prompt": PROMPT, "max_tokens": 64, "model": fixtures.SIM_MODEL})
    traced = {"TRACING_ENABLED": "true", "OTEL_TRACES_EXPORTER": "none",
              "OTEL_TRACES_SAMPLER_ARG": ratio}  # fmt: skip
    return [
        Scenario(report.BARE, bare.wsgi, Load(bare.path), bare.path),
        Scenario(
            report.USUAL,
            usual.wsgi,
            Load(usual.path, headers=usual.headers),
            usual.path,
            usual.headers,
            usual.env,
        ),
        Scenario(
            report.USUAL_DB_GET,
            usual.wsgi,
            Load(f"/notes/{fx.note_id}", headers=usual_auth),
            usual.path,
            usual.headers,
            usual.env,
        ),
        Scenario(
            report.USUAL_WRITE,
            usual.wsgi,
            Load("/notes", "POST", body, headers=usual_auth, ok=(201,)),
            usual.path,
            usual.headers,
            usual.env,
        ),
        Scenario(report.FLOOR, "bench.apps.bare_redis:application", Load("/ping"), "/ping"),
        Scenario("ours: public GET", OURS, Load("/versions")),
        Scenario(
            "ours: authenticated + rate-limited GET", OURS, Load("/v1/bench/ping", headers=auth)
        ),
        Scenario("ours: cached GET (hit)", OURS, Load(cached, headers=auth)),
        Scenario("ours: cached GET (304)", OURS, Load(cached, headers=auth, ok=(304,)), etag=True),
        Scenario("ours: DB-backed GET", OURS, Load(note, headers=auth)),
        Scenario("ours: write", OURS, Load("/v1/notes", "POST", body, headers=auth, ok=(201,))),
        Scenario(
            "ours: AI gateway (simulator)", OURS, Load("/v1/ai/generate", "POST", ai, headers=auth)
        ),
        # Last: it needs its own server (tracing is set up per process).
        Scenario(
            f"ours: authenticated GET, tracing {ratio}",
            OURS,
            Load("/v1/bench/ping", headers=auth),
            env=traced,
        ),
    ]


def usual_token(fx: Fixtures) -> str:
    """A Flask-JWT-Extended access token for the fixtures' user (HS256, no expiry)."""
    from flask import Flask
    from flask_jwt_extended import JWTManager, create_access_token

    helper = Flask("usual-tokens")
    helper.config["JWT_SECRET_KEY"] = fx.env["BENCH_JWT_SECRET"]
    JWTManager(helper)
    with helper.app_context():
        return create_access_token(identity=fx.user_id, expires_delta=False)


_STARTED = time.monotonic()


def say(message: str) -> None:
    """One progress line on stderr, stamped with the time since `make bench` started."""
    took = int(time.monotonic() - _STARTED)
    print(f"[bench {took // 60}m{took % 60:02d}s] {message}", file=sys.stderr, flush=True)


def serve_and_measure(
    group: list[Scenario], fx: Fixtures, args: Namespace, work: Path
) -> dict[str, Measurement]:
    """Serve a group of scenarios (same app, same environment) with one fresh gunicorn and
    measure each in turn: a warm-up, then the timed run."""
    first = group[0]
    slug = "".join(c if c.isalnum() else "-" for c in first.name)
    prom = work / f"prom-{slug}-{time.monotonic_ns()}"
    prom.mkdir()
    env = {**fx.env, **first.env, "PROMETHEUS_MULTIPROC_DIR": str(prom)}
    server = pipeline.Scenario(first.name, first.wsgi, first.ready, headers=first.ready_headers)
    shape = Namespace(workers=args.workers, threads=args.threads)
    out: dict[str, Measurement] = {}
    with pipeline.gunicorn(server, shape, env, work / f"{slug}.log") as (url, master):
        for sc in group:
            say(f"  {sc.name} ({args.duration + args.warmup:g} s of load) ...")
            want = sc.load
            if sc.etag:  # the first read fills the cache; its ETag makes every later one a 304
                got = httpx.get(url + want.path, headers=want.headers, timeout=30)
                got.raise_for_status()
                want = replace(want, headers={**want.headers, "If-None-Match": got.headers["ETag"]})
            opts = {"connections": args.connections, "threads": args.wrk_threads}
            load.run(url, want, seconds=args.warmup, **opts)
            app0, deps0 = cpu(master, fx)
            m = out[sc.name] = load.run(url, want, seconds=args.duration, **opts)
            app1, deps1 = cpu(master, fx)
            if m.requests:
                m.app_cpu_ms = round((app1 - app0) * 1000 / m.requests, 3)
                m.deps_cpu_ms = round((deps1 - deps0) * 1000 / m.requests, 3)
            say(f"    {m.rps:,.0f} req/s, p99 {m.p99_ms:.1f} ms, {m.statuses}")
    return out


def cpu(master: int, fx: Fixtures) -> tuple[float, float]:
    """CPU seconds so far of the gunicorn workers, and of the dependencies we started.

    CPU per request does not move with other load on a shared machine the way req/s does.
    """
    deps = sum(load.tree_cpu_seconds(pid) for pid in fx.dependency_pids)
    return pipeline.worker_cpu_seconds(master), deps


def groups(chosen: list[Scenario]) -> list[list[Scenario]]:
    """Consecutive scenarios that can share one server (same app and environment)."""
    out: list[list[Scenario]] = []
    for sc in chosen:
        if out and (out[-1][0].wsgi, out[-1][0].env) == (sc.wsgi, sc.env):
            out[-1].append(sc)
        else:
            out.append([sc])
    return out


def others(args: Namespace, out: Path) -> list[str]:
    """Run each other bench/ script present; its report to <name>.txt/.json. Failures."""
    failed = []
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    for number, (script, extra) in enumerate(OTHERS.items(), 1):
        path = ROOT / "bench" / script
        if not path.exists():
            say(f"{script}: not present, skipped")
            continue
        stem = path.stem
        cmd = [sys.executable, str(path), *extra, "--json", str(out / f"{stem}.json")]
        say(f"script {number}/{len(OTHERS)}: {script} (up to {args.others_timeout:g} s) ...")
        started = time.monotonic()
        try:
            done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True,
                                  timeout=args.others_timeout)  # fmt: skip
            text, code = done.stdout + done.stderr[-4000:] * (done.returncode != 0), done.returncode
        except subprocess.TimeoutExpired:
            text, code = f"timed out after {args.others_timeout:g} s", -1
        (out / f"{stem}.txt").write_text(f"$ python bench/{script} {' '.join(extra)}\n\n{text}")
        took = time.monotonic() - started
        say(f"  exit {code} after {took:.0f} s")
        if code != 0:
            failed.append(script)
    return failed


def main(argv: list[str] | None = None) -> int:
    """Parse options, run the scenarios and the other scripts, write bench/results/."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=2, help="seconds of load before it")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds, best kept")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--wrk-threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers, every app")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker, every app")
    parser.add_argument("--ratio", default="0.1", help="trace sampling ratio (chart default)")
    parser.add_argument("--only", action="append", help="only scenarios containing this")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--no-docs", action="store_true", help="leave docs/performance.md")
    parser.add_argument("--skip-others", action="store_true", help="only the pipeline table")
    parser.add_argument("--others-timeout", type=float, default=900)
    args = parser.parse_args(argv)
    load.require_wrk()
    load_before = os.getloadavg()[0]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
        fx = fixtures.prepare(stack, work)
        chosen = [s for s in scenarios(fx, args.ratio)
                  if not args.only or any(o in s.name for o in args.only)]  # fmt: skip
        best: dict[str, Measurement] = {}
        batches = groups(chosen)
        for round_ in range(1, args.rounds + 1):
            for number, group in enumerate(batches, 1):
                say(
                    f"round {round_}/{args.rounds}, server {number}/{len(batches)}: "
                    f"{group[0].wsgi} {group[0].env}"
                )
                for name, m in serve_and_measure(group, fx, args, work).items():
                    if name not in best or m.rps > best[name].rps:
                        best[name] = m
    rows = [report.Row(s.name, s.request, best[s.name]) for s in chosen]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip() or "unknown"  # fmt: skip
    setup = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"), "commit": commit,
        "workers": args.workers, "threads": args.threads, "connections": args.connections,
        "wrk_threads": args.wrk_threads, "duration": args.duration, "warmup": args.warmup,
        "rounds": args.rounds, "cpus": os.cpu_count(), "load_before": load_before,
    }  # fmt: skip
    md, _, _ = report.write(args.out, rows, setup)
    print("\n" + md.read_text())
    if not args.no_docs:
        report.sync_docs(DOC, md)
    failed = [] if args.skip_others else others(args, args.out)
    if failed:
        say(f"failed: {', '.join(failed)} (see {args.out}/*.txt)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
