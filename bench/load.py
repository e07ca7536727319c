"""One bounded wrk run with bench/wrk.lua, and what it measured.

wrk (Debian package `wrk`) is an event-driven C load generator: two of its threads keep
32 keep-alive connections busy for a few percent of one core, so on loopback the server
under test, not the tool, is what saturates (`docs/performance.md` shows the headroom
measured against bare Flask). The Lua script counts every status by name, so a 304 is
known to be a 304 and a 429 or 503 is an error here even though wrk calls 3xx success.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

LUA: Final = Path(__file__).with_name("wrk.lua")
MARKER: Final = "WRK_JSON "


@dataclass
class Load:
    """What to send: one request shape, repeated by every connection."""

    path: str
    method: str = "GET"
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    ok: tuple[int, ...] = (200,)  # statuses that count as success for this scenario


@dataclass
class Measurement:
    """Throughput, latency and outcomes of one timed run."""

    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    requests: int
    errors: int  # socket errors, timeouts, statuses outside `Load.ok`; 1 if nothing answered
    statuses: dict[str, int]
    app_cpu_ms: float = 0.0  # CPU of the gunicorn workers per request
    deps_cpu_ms: float = 0.0  # CPU of PostgreSQL, Redis and the simulator per request


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of `pid`, its reaped children and its live descendants.

    PostgreSQL backends and gunicorn workers are children of one parent; a child that
    exited is accounted in the parent's cutime/cstime (proc(5)), a live one in its own.
    """
    from devstack.process import descendants

    ticks = 0
    for n, each in enumerate([pid, *descendants(pid)]):
        try:
            raw = Path(f"/proc/{each}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # utime, stime
        if n == 0:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime of reaped children
    return ticks / os.sysconf("SC_CLK_TCK")


def require_wrk() -> str:
    """Path of wrk, or an error naming the package that provides it."""
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is missing: apt-get install -y --no-install-recommends wrk")
    return found


def parse(output: str, ok: tuple[int, ...]) -> Measurement:
    """The JSON line bench/wrk.lua prints in done()."""
    line = next(x for x in output.splitlines() if x.startswith(MARKER))
    raw = json.loads(line.removeprefix(MARKER))
    statuses = {str(k): int(v) for k, v in sorted(raw["statuses"].items())}
    wrong = sum(n for code, n in statuses.items() if int(code) not in ok)
    sockets = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"] + raw["timeouts"]
    seconds = raw["duration_us"] / 1e6
    return Measurement(
        rps=raw["requests"] / seconds if seconds else 0.0,
        p50_ms=raw["p50_us"] / 1000,
        p90_ms=raw["p90_us"] / 1000,
        p99_ms=raw["p99_us"] / 1000,
        max_ms=raw["max_us"] / 1000,
        requests=raw["requests"],
        errors=wrong + sockets + (raw["requests"] == 0),
        statuses=statuses,
    )


def run(
    url: str, load: Load, *, seconds: float, connections: int, threads: int, timeout: float = 5
) -> Measurement:
    """Drive `url + load.path` for `seconds` and return the measurement."""
    cmd = [
        require_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{max(1, round(seconds))}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(LUA),
    ]
    for name, value in load.headers.items():
        cmd += ["-H", f"{name}: {value}"]
    env = {**os.environ, "WRK_METHOD": load.method, "WRK_BODY": load.body}
    done = subprocess.run(
        [*cmd, url + load.path], capture_output=True, text=True, env=env, timeout=seconds + 60
    )
    if done.returncode != 0 or MARKER not in done.stdout:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    return parse(done.stdout, load.ok)
