"""Head to head with LiteLLM's proxy: our chat surfaces and LiteLLM's, same simulator.

    uv run python bench/litellm.py                      # ~4 minutes, LiteLLM installed once
    uv run python bench/litellm.py --quick --no-litellm # smoke test: our rows only, ~30 s
    uv run python bench/litellm.py --json out.json

Same machine, same run, same provider (the simulator, scripts/provider_sim), same load
client, same request. Scenarios, alternated round by round:

    direct              client -> simulator `/v1/chat/completions` (the baseline)
    direct stream       the same with `stream: true`
    ours generate       `POST /v1/ai/generate` (our own surface)
    ours generate stream  the same, Server-Sent Events
    ours openai         `POST /openai/v1/chat/completions`
    ours openai stream  the same with `stream: true`
    ours anthropic      `POST /anthropic/v1/messages`
    litellm             LiteLLM's `POST /v1/chat/completions`
    litellm stream      the same with `stream: true`

Ours is the real app (`app.wsgi`) under gunicorn with 2 workers x 4 threads (the chart's
shape), with real PostgreSQL and Redis (bench/fixtures.py, as `make bench`). LiteLLM is
`litellm[proxy]` at LITELLM_VERSION from PyPI in its own virtualenv under the git-ignored
`.cache/bench/` (never the project's lock), started with its documented command line,
`litellm --config cfg.yaml --port P --num_workers 2`, a config naming one model served
by the simulator, a master key and no database.

The load is a closed loop of `--clients` (16) keep-alive connections driven by one
asyncio process speaking HTTP/1.1 on raw sockets, bounded by a request count and a time
limit per scenario and round. Latency is to the last byte; time to first token (TTFT) is
to the first streamed event carrying text. "Added" is the scenario's percentile minus
the direct call's of the same kind (stream or not), pooled over the rounds. CPU per
request is read from /proc over the measured requests: the gunicorn workers (ours) or
every LiteLLM process (its supervisor and workers), PostgreSQL + Redis for ours, and the
simulator for every row; before the rounds, each server's idle CPU over 5 s
(background work, which every row's figure includes). Req/s is the median of the
rounds. Not a test: the numbers and how to read them are in docs/performance.md.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

ROOT: Final = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts")]

from devstack import free_port  # noqa: E402

from bench import fixtures, load  # noqa: E402
from bench import run_pipeline as pipeline  # noqa: E402

#: The one place the LiteLLM version is chosen (`--litellm-version` overrides it).
LITELLM_VERSION: Final = "1.108.7"
CACHE: Final = ROOT / ".cache" / "bench"
PROMPT: Final = "summarise the meeting notes in three short bullet points please"
MODEL: Final = fixtures.SIM_MODEL
#: The first streamed event that carries text: an OpenAI delta or our `delta` event.
TOKEN: Final = re.compile(rb'"(?:content|text)": ?"[^"]')
STREAM_END: Final = (b"[DONE]", b"event: done", b"event: end", b"message_stop")


@dataclass(frozen=True)
class Target:
    """One scenario: where the request goes and how it looks on the wire."""

    name: str
    server: str  # "direct" | "ours" | "litellm": which processes' CPU to count
    url: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))

    def request(self) -> bytes:
        """The raw HTTP/1.1 request, built once and sent again and again."""
        body = json.dumps(self.body).encode()
        host = urlsplit(self.url).netloc
        lines = [f"POST {self.path} HTTP/1.1", f"Host: {host}",
                 "Content-Type: application/json", f"Content-Length: {len(body)}",
                 *(f"{k}: {v}" for k, v in self.headers.items())]  # fmt: skip
        return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass
class Sample:
    """One answered request."""

    total_ms: float
    ttft_ms: float | None
    ok: bool


@dataclass
class Round:
    """What one scenario measured in one round."""

    samples: list[Sample]
    errors: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds over the round: "server", "deps", "sim"


# -- the load client ------------------------------------------------------------------


class _Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    def close(self) -> None:
        self.writer.close()


async def _exchange(conn: _Conn, request: bytes, stream: bool) -> tuple[Sample, bool]:
    """Send one request and read its answer; the sample and whether to keep the socket."""
    started = time.perf_counter()
    conn.writer.write(request)
    head = await conn.reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    headers = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name:
            headers[name.strip().lower()] = value.strip().lower()
    ttft: float | None = None
    body = bytearray()

    def got(data: bytes) -> None:
        nonlocal ttft
        body.extend(data)
        if stream and ttft is None and TOKEN.search(body):
            ttft = (time.perf_counter() - started) * 1000

    keep = headers.get(b"connection") != b"close"
    if b"content-length" in headers:
        got(await conn.reader.readexactly(int(headers[b"content-length"])))
    elif headers.get(b"transfer-encoding") == b"chunked":
        while True:
            size = int((await conn.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await conn.reader.readuntil(b"\r\n")
                break
            got((await conn.reader.readexactly(size + 2))[:-2])
    else:  # delimited by the end of the connection (the simulator's streams)
        keep = False
        while data := await conn.reader.read(65536):
            got(data)
    total = (time.perf_counter() - started) * 1000
    if stream:
        ok = status == 200 and ttft is not None and any(end in body for end in STREAM_END)
    else:
        ok = status == 200 and TOKEN.search(body) is not None
    return Sample(total, ttft, ok), keep


async def _drive(target: Target, clients: int, requests: int, seconds: float) -> Round:
    """`clients` connections, each sending the next request as soon as its answer is in,
    until `requests` were sent or `seconds` passed."""
    parts = urlsplit(target.url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = target.request()
    samples: list[Sample] = []
    errors = 0
    sent = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def client() -> None:
        nonlocal sent, errors
        conn: _Conn | None = None
        while sent < requests and time.perf_counter() < deadline:
            sent += 1
            try:
                if conn is None:
                    conn = _Conn(*await asyncio.open_connection(host, port))
                sample, keep = await asyncio.wait_for(
                    _exchange(conn, request, target.stream), timeout=30
                )
            except (OSError, ValueError, asyncio.IncompleteReadError, TimeoutError):
                errors += 1
                if conn is not None:
                    conn.close()
                conn = None
                continue
            samples.append(sample)
            errors += not sample.ok
            if not keep:
                conn.close()
                conn = None
        if conn is not None:
            conn.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return Round(samples, errors, time.perf_counter() - started, {})


# -- the servers ----------------------------------------------------------------------


def litellm_bin(version: str) -> Path:
    """LiteLLM's command in its own virtualenv under .cache/bench/, installed once."""
    venv = CACHE / f"litellm-{version}"
    exe, done = venv / "bin" / "litellm", venv / ".installed"
    if exe.exists() and done.exists():
        return exe
    uv = shutil.which("uv")
    if uv is None:
        raise SystemExit("uv is missing: it installs LiteLLM into .cache/bench/ (make venv)")
    shutil.rmtree(venv, ignore_errors=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    say(f"installing litellm[proxy]=={version} into {venv.relative_to(ROOT)} ...")
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    steps = [[uv, "venv", "--quiet", "--python", python, str(venv)],
             [uv, "pip", "install", "--quiet", "--python", str(venv / "bin" / "python"),
              f"litellm[proxy]=={version}"]]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    for cmd in steps:
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
        if result.returncode != 0:
            raise SystemExit(f"blocked: {' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    done.write_text(version + "\n")
    return exe


@contextmanager
def litellm_proxy(exe: Path, sim_url: str, sim_key: str, work: Path) -> Iterator[
    tuple[str, str, int]
]:  # fmt: skip
    """LiteLLM's proxy on a free port (2 workers, no database): URL, master key, pid."""
    port, key = free_port(), "sk-" + secrets.token_hex(32)
    config = work / "litellm.yaml"
    config.write_text(json.dumps({  # JSON is YAML
        "model_list": [{"model_name": MODEL, "litellm_params": {
            "model": f"openai/{MODEL}", "api_base": f"{sim_url}/v1", "api_key": sim_key}}],
        "general_settings": {"master_key": key},
    }))  # fmt: skip
    # No database, no Redis: nothing of ours leaks into its environment.
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "REDIS_URL", "VIRTUAL_ENV", "PYTHONPATH")}  # fmt: skip
    # The bundled model price list instead of fetching it from GitHub at every start.
    env["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    log = work / "litellm.log"
    # Through the venv's interpreter: the script's shebang names the path it was installed
    # from, which is gone when .cache/ is shared by checkouts that come and go.
    cmd = [str(exe.parent / "python"), str(exe), "--config", str(config),
           "--host", "127.0.0.1", "--port", str(port),
           "--num_workers", "2",
           # uvicorn's default 5 s worker health check kills a worker still importing
           # LiteLLM (20-40 s on a busy 2-core machine): the workers never come up.
           "--timeout_worker_healthcheck", "180"]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=work, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            # Importing LiteLLM took 3.6 minutes of wall time (36 s of CPU) at load average
            # 19 on this 2-core machine: its three processes each import it.
            deadline = time.monotonic() + 900
            while True:
                if proc.poll() is not None:
                    raise SystemExit(f"blocked: {' '.join(cmd)} exited:\n{_tail(log)}")
                try:
                    if httpx.get(f"{url}/health/liveliness", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"blocked: {' '.join(cmd)} did not answer:\n{_tail(log)}")
                time.sleep(0.5)
            yield url, key, proc.pid
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-3000:]


def targets(fx: fixtures.Fixtures, ours: str, theirs: tuple[str, str] | None) -> list[Target]:
    """Every scenario, in the order of the table."""
    messages = [{"role": "user", "content": PROMPT}]
    chat = {"model": MODEL, "max_tokens": 64, "messages": messages}
    generate = {"model": MODEL, "max_tokens": 64, "prompt": PROMPT}
    sim = {"Authorization": f"Bearer {fixtures.SIM_KEY}"}
    auth = {"Authorization": fx.bearer}
    out = [
        Target("direct", "direct", fx.sim_url, "/v1/chat/completions", chat, sim),
        Target("direct stream", "direct", fx.sim_url, "/v1/chat/completions",
               {**chat, "stream": True}, sim),
        Target("ours generate", "ours", ours, "/v1/ai/generate", generate, auth),
        Target("ours generate stream", "ours", ours, "/v1/ai/generate",
               {**generate, "stream": True}, auth),
        Target("ours openai", "ours", ours, "/openai/v1/chat/completions", chat, auth),
        Target("ours openai stream", "ours", ours, "/openai/v1/chat/completions",
               {**chat, "stream": True}, auth),
        Target("ours anthropic", "ours", ours, "/anthropic/v1/messages", chat, auth),
    ]  # fmt: skip
    if theirs is not None:
        url, key = theirs
        bearer = {"Authorization": f"Bearer {key}"}
        out += [
            Target("litellm", "litellm", url, "/v1/chat/completions", chat, bearer),
            Target("litellm stream", "litellm", url, "/v1/chat/completions",
                   {**chat, "stream": True}, bearer),
        ]  # fmt: skip
    return out


# -- measuring ------------------------------------------------------------------------

_STARTED = time.monotonic()


def say(message: str) -> None:
    took = int(time.monotonic() - _STARTED)
    print(f"[litellm {took // 60}m{took % 60:02d}s] {message}", file=sys.stderr, flush=True)


@dataclass
class Pids:
    """Which processes' CPU each kind of row counts."""

    ours_master: int
    deps: list[int]  # PostgreSQL and Redis we started
    sim: int
    litellm: int = 0

    def cpu(self, server: str) -> dict[str, float]:
        """CPU seconds so far: the server under test, ours' dependencies, the simulator."""
        if server == "ours":
            main = pipeline.worker_cpu_seconds(self.ours_master)
        elif server == "litellm":
            main = load.tree_cpu_seconds(self.litellm)
        else:
            main = 0.0
        deps = sum(load.tree_cpu_seconds(p) for p in self.deps) if server == "ours" else 0.0
        return {"server": main, "deps": deps, "sim": load.tree_cpu_seconds(self.sim)}


def measure(target: Target, pids: Pids, clients: int, requests: int, seconds: float) -> Round:
    """A short warm-up, then the measured requests with the CPU they cost."""
    warm = asyncio.run(_drive(target, clients, clients * 2, 10))
    if warm.errors:
        say(f"  {target.name}: {warm.errors} errors while warming up")
    before = pids.cpu(target.server)
    got = asyncio.run(_drive(target, clients, requests, seconds))
    after = pids.cpu(target.server)
    got.cpu = {k: after[k] - before[k] for k in before}
    return got


def idle_cpu(pids: Pids, litellm: bool, seconds: float = 5) -> dict[str, float]:
    """CPU each server spends with no request in flight (background threads, health
    checks, polling), in ms per second: part of every row's CPU per request."""
    kinds = ["ours", "litellm"] if litellm else ["ours"]
    before = {k: pids.cpu(k) for k in kinds}
    time.sleep(seconds)
    after = {k: pids.cpu(k) for k in kinds}

    def rate(kind: str, part: str) -> float:
        return round((after[kind][part] - before[kind][part]) * 1000 / seconds, 2)

    out = {"ours": rate("ours", "server"), "ours_deps": rate("ours", "deps"),
           "simulator": rate("ours", "sim")}  # fmt: skip
    if litellm:
        out["litellm"] = rate("litellm", "server")
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def summarise(name: str, rounds: list[Round]) -> dict[str, Any]:
    """Pool a scenario's rounds into one row (before the `added` columns)."""
    good = [s for r in rounds for s in r.samples if s.ok]
    total = [s.total_ms for s in good]
    ttft = [s.ttft_ms for s in good if s.ttft_ms is not None]
    answered = sum(len(r.samples) for r in rounds)
    per = {k: sum(r.cpu.get(k, 0.0) for r in rounds) * 1000 / max(1, answered)
           for k in ("server", "deps", "sim")}  # fmt: skip
    row: dict[str, Any] = {
        "scenario": name, "requests": answered,
        "errors": sum(r.errors for r in rounds),
        "rps": round(statistics.median(len(r.samples) / r.seconds for r in rounds), 1),
        "p50_ms": round(_pct(total, 0.5), 2), "p99_ms": round(_pct(total, 0.99), 2),
        "server_cpu_ms": round(per["server"], 3), "deps_cpu_ms": round(per["deps"], 3),
        "sim_cpu_ms": round(per["sim"], 3),
    }  # fmt: skip
    if ttft:
        row |= {"ttft_p50_ms": round(_pct(ttft, 0.5), 2), "ttft_p99_ms": round(_pct(ttft, 0.99), 2)}
    return row


def added(rows: list[dict[str, Any]]) -> None:
    """The `added_*` columns: each row less the direct call of the same kind (also in the
    one-client figures, `one_client`)."""
    by = {r["scenario"]: r for r in rows}
    for row in rows:
        base = by["direct stream" if "stream" in row["scenario"] else "direct"]
        for mine, theirs in ((row, base), (row.get("one_client"), base.get("one_client"))):
            if mine is None or theirs is None:
                continue
            for key in ("p50_ms", "p99_ms", "ttft_p50_ms", "ttft_p99_ms"):
                if key in mine and key in theirs:
                    mine[f"added_{key}"] = round(mine[key] - theirs[key], 2)
            mine["cpu_ms"] = round(mine["server_cpu_ms"] + mine["deps_cpu_ms"], 3)


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Within 10% of /v1/ai/generate (added p50, CPU per request); a 7x lead on LiteLLM."""
    by = {r["scenario"]: r for r in rows}
    out: dict[str, Any] = {"within_10pct_of_generate": {}, "lead_over_litellm": {}}
    for ours, base in (("ours openai", "ours generate"), ("ours anthropic", "ours generate"),
                       ("ours openai stream", "ours generate stream")):  # fmt: skip
        a, b = by[ours], by[base]
        ratio_p50 = a["added_p50_ms"] / b["added_p50_ms"] if b["added_p50_ms"] > 0 else None
        ratio_cpu = a["cpu_ms"] / b["cpu_ms"] if b["cpu_ms"] else None
        out["within_10pct_of_generate"][ours] = {
            "added_p50_ratio": _r(ratio_p50), "cpu_ratio": _r(ratio_cpu),
            "met": ratio_p50 is not None and ratio_cpu is not None
            and ratio_p50 <= 1.1 and ratio_cpu <= 1.1,
        }  # fmt: skip
    for ours, theirs in (("ours openai", "litellm"), ("ours openai stream", "litellm stream")):
        if theirs not in by:
            continue
        out["lead_over_litellm"][ours] = _lead(by[ours], by[theirs])
        if "one_client" in by[ours] and "one_client" in by[theirs]:
            lead = _lead(by[ours]["one_client"], by[theirs]["one_client"])
            out["lead_over_litellm"][f"{ours}, one client"] = lead
    return out


def _lead(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """How many times less added p50 and CPU per request `a` costs than `b`."""
    lead_p50 = b["added_p50_ms"] / a["added_p50_ms"] if a["added_p50_ms"] > 0 else None
    lead_cpu = b["cpu_ms"] / a["cpu_ms"] if a["cpu_ms"] else None
    return {
        "added_p50_lead": _r(lead_p50), "cpu_lead": _r(lead_cpu),
        "met": lead_p50 is not None and lead_cpu is not None and lead_p50 >= 7 and lead_cpu >= 7,
    }  # fmt: skip


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table docs/performance.md quotes."""
    out = ["| scenario | req/s | p50 ms | p99 ms | added p50 / p99 ms | TTFT p50 / p99 ms "
           "| added TTFT p50 ms | CPU ms/req server + PG/Redis | simulator CPU ms/req "
           "| errors | 1 client: added p50 ms | 1 client: CPU ms/req |",
           "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]  # fmt: skip
    for r in rows:
        direct = r["scenario"].startswith("direct")
        add = "-" if direct else f"{r['added_p50_ms']:+.2f} / {r['added_p99_ms']:+.2f}"
        ttft = f"{r['ttft_p50_ms']:.2f} / {r['ttft_p99_ms']:.2f}" if "ttft_p50_ms" in r else "-"
        add_ttft = (f"{r['added_ttft_p50_ms']:+.2f}"
                    if "added_ttft_p50_ms" in r and not direct else "-")  # fmt: skip
        cpu = "-" if direct else f"{r['server_cpu_ms']:.2f} + {r['deps_cpu_ms']:.2f}"
        one = r.get("one_client")
        if one is None:
            one_add = one_cpu = "-"
        elif direct:
            one_add, one_cpu = f"({one['p50_ms']:.2f})", "-"
        else:
            one_add = f"{one['added_p50_ms']:+.2f}"
            one_cpu = f"{one['server_cpu_ms']:.2f} + {one['deps_cpu_ms']:.2f}"
        out.append(
            f"| {r['scenario']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} "
            f"| {add} | {ttft} | {add_ttft} | {cpu} | {r['sim_cpu_ms']:.2f} | {r['errors']} "
            f"| {one_add} | {one_cpu} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Start everything, run the alternating rounds, print (and write) the results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--requests", type=int, default=600, help="per scenario per round")
    parser.add_argument("--seconds", type=float, default=12, help="cap per scenario per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds")
    parser.add_argument(
        "--one-client", type=int, default=100, help="then requests one at a time (0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="1 round of 80 requests")
    parser.add_argument("--no-litellm", action="store_true", help="our rows only")
    parser.add_argument("--litellm-version", default=LITELLM_VERSION)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.rounds, args.seconds, args.one_client = 80, 1, 6, 20
    load_before = os.getloadavg()[0]
    exe = None if args.no_litellm else litellm_bin(args.litellm_version)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-litellm-")))
        say("PostgreSQL, Redis, the simulator, migrations ...")
        fx = fixtures.prepare(stack, work)
        (work / "prom").mkdir()
        env = {**fx.env, "PROMETHEUS_MULTIPROC_DIR": str(work / "prom"), "METRICS_PORT": "0"}
        server = pipeline.Scenario("ours", "app.wsgi:application", "/livez")
        shape = Namespace(workers=2, threads=4)
        say("gunicorn with our app (2 workers x 4 threads) ...")
        ours, master = stack.enter_context(pipeline.gunicorn(server, shape, env, work / "g.log"))
        deps = [p for p in fx.dependency_pids if p != fx.sim_pid]
        pids = Pids(master, deps, fx.sim_pid)
        theirs = None
        if exe is not None:
            say(f"LiteLLM {args.litellm_version} proxy (2 workers, no database) ...")
            url, key, pids.litellm = stack.enter_context(
                litellm_proxy(exe, fx.sim_url, fixtures.SIM_KEY, work)
            )
            theirs = (url, key)
        chosen = targets(fx, ours, theirs)
        idle = idle_cpu(pids, theirs is not None)
        say(f"idle CPU, ms per second: {idle}")
        rounds: dict[str, list[Round]] = {t.name: [] for t in chosen}
        alone: dict[str, list[Round]] = {t.name: [] for t in chosen}
        for number in range(1, args.rounds + 1):
            for target in chosen:
                got = measure(target, pids, args.clients, args.requests, args.seconds)
                rounds[target.name].append(got)
                p50 = _pct([s.total_ms for s in got.samples], 0.5)
                say(f"round {number}/{args.rounds} {target.name}: {len(got.samples)} in "
                    f"{got.seconds:.1f} s, p50 {p50:.1f} ms, {got.errors} errors")  # fmt: skip
                if args.one_client:
                    one = measure(target, pids, 1, args.one_client, args.seconds)
                    alone[target.name].append(one)
    rows = [summarise(name, got) for name, got in rounds.items()]
    for row in rows:
        if alone[row["scenario"]]:
            row["one_client"] = summarise(row["scenario"], alone[row["scenario"]])
            row["errors"] += row["one_client"]["errors"]
    added(rows)
    verdict = goals(rows)
    load_after = os.getloadavg()[0]
    setup = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "litellm": None if args.no_litellm else args.litellm_version,
        "clients": args.clients, "requests_per_round": args.requests,
        "one_client_requests_per_round": args.one_client,
        "seconds_cap": args.seconds, "rounds": args.rounds, "cpus": os.cpu_count(),
        "load_before": round(load_before, 2), "load_after": round(load_after, 2),
        "idle_cpu_ms_per_s": idle,
    }  # fmt: skip
    print(f"{args.clients} concurrent clients, {args.rounds} alternating round(s) of up to "
          f"{args.requests} requests / {args.seconds:g} s per scenario, each followed by "
          f"{args.one_client} requests from one client; LiteLLM "
          f"{setup['litellm'] or 'not run'}; {os.cpu_count()} CPUs, load average "
          f"{load_before:.2f} before, {load_after:.2f} after\n")  # fmt: skip
    print(table(rows))
    print(f"\nidle CPU (no request in flight), ms per second: {idle}\n")
    for ours, v in verdict["within_10pct_of_generate"].items():
        print(f"{ours} vs /v1/ai/generate: added p50 x{v['added_p50_ratio']}, "
              f"CPU x{v['cpu_ratio']}: within 10% {'met' if v['met'] else 'NOT met'}")  # fmt: skip
    for ours, v in verdict["lead_over_litellm"].items():
        print(f"{ours} vs LiteLLM: {v['added_p50_lead']}x less added p50, "
              f"{v['cpu_lead']}x less CPU: 7x lead {'met' if v['met'] else 'NOT met'}")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps({"setup": setup, "results": rows, "goals": verdict},
                                        indent=2))  # fmt: skip
    return 1 if any(r["errors"] for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
