"""Where a DB-backed request's CPU goes: our app called in-process, no gunicorn, no wrk.

    uv run python bench/db_path.py                      # CPU and round trips per step
    uv run python bench/db_path.py --profile "DB-backed GET" --top 25

For each endpoint kind of the pipeline table (the authenticated GET without a database,
the DB-backed GET `GET /v1/notes/{id}`, the write `POST /v1/notes`) it calls the WSGI
app of `bench/apps/suite.py` directly, one request after another, and reports per
request: the process CPU (`time.process_time`), the CPU of PostgreSQL and Redis (from
/proc), and the PostgreSQL round trips (libpq waits counted in the psycopg2 wait
callback, which the app installs for its client deadlines, app/database/engine.py), for
the database path as it was before this work and after each change (`steps`). Steps
and kinds alternate over several rounds and each keeps its lowest CPU, so load from
other processes on a shared machine hits them alike. `--profile` prints cProfile's heaviest
functions for one kind. docs/performance.md quotes what it measured.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import fixtures, load

Call = Callable[[], int]


def wsgi_caller(app: Any, method: str, path: str, headers: dict[str, str], body: str) -> Call:
    """A function sending one request straight to the WSGI app; returns the status."""
    from werkzeug.test import EnvironBuilder

    data = body.encode()
    base = EnvironBuilder(
        path=path, method=method, headers=headers, data=data,
        content_type="application/json" if data else None,
    ).get_environ()  # fmt: skip
    status: list[int] = []

    def start_response(line: str, _headers: Any, _exc: Any = None) -> None:
        status.append(int(line[:3]))

    def call() -> int:
        environ = dict(base)
        environ["wsgi.input"] = io.BytesIO(data)
        for _ in app(environ, start_response):
            pass
        return status.pop()

    return call


def count_round_trips() -> list[int]:
    """Wrap the installed psycopg2 wait callback so every libpq wait is counted."""
    from psycopg2 import extensions

    inner = extensions.get_wait_callback()
    counter = [0]
    if inner is None:
        return counter

    def counting(conn: Any) -> None:
        counter[0] += 1
        inner(conn)

    extensions.set_wait_callback(counting)
    return counter


def steps(app: Any) -> dict[str, Callable[[], None]]:
    """The database path before this work and after each change, cumulatively, set on the
    one app so all of them are measured in the same process and the same run.

    before: `pool_pre_ping`, a refresh after the insert, transactional sessions (as
    at commit a715370); each later step undoes one of them. "no wait callback" is a
    measurement, not a change: the cost of the psycopg2 callback behind the client
    deadlines (app/database/engine.py), which the app keeps.
    """
    from psycopg2 import extensions

    from app.core import db
    from app.custom.notes import services
    from app.custom.notes.models import NotePublic

    pool = app.extensions[db.EXTENSION].pool
    autocommit, transactional = (
        app.extensions[db.AUTOCOMMIT_FACTORY],
        app.extensions[db.SESSION_FACTORY],
    )
    create, read, insert = services.create_note, services.read_note, services.insert_note
    callback = extensions.get_wait_callback()

    def orm_read(**kwargs: Any) -> Any:  # what the view did before read_note
        return NotePublic.model_validate(services.get_note(**kwargs), from_attributes=True)

    def orm_insert(**kwargs: Any) -> Any:  # what the view did before insert_note
        return NotePublic.model_validate(services.create_note(**kwargs), from_attributes=True)

    def refreshing(**kwargs: Any) -> Any:
        note = create(**kwargs)
        kwargs["session"].refresh(note)
        return note

    def state(
        ping: bool, refresh: bool, auto: bool, core: bool = False, wait: bool = True
    ) -> Callable[[], None]:
        def apply() -> None:
            services.read_note = read if core else orm_read
            services.insert_note = insert if core else orm_insert
            pool._pre_ping = ping  # a private attribute: measurement only
            services.create_note = refreshing if refresh else create
            app.extensions[db.AUTOCOMMIT_FACTORY] = autocommit if auto else transactional
            extensions.set_wait_callback(callback if wait else None)

        return apply

    return {
        "before (pre-ping, refresh, transactions)": state(True, True, False),
        "+ checkout check instead of pre-ping": state(False, True, False),
        "+ no refresh after the insert": state(False, False, False),
        "+ autocommit session": state(False, False, True),
        "+ Core read and insert (now)": state(False, False, True, core=True),
        "(now without the wait callback)": state(False, False, True, core=True, wait=False),
    }


def main(argv: list[str] | None = None) -> int:
    """Prepare servers and rows, then measure (or profile) each endpoint kind and step."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=500, help="per kind, step and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profile", help="profile this kind (at the current code) instead")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="db-path-")))
        fx = fixtures.prepare(stack, work)
        prom = work / "prom"
        prom.mkdir()
        os.environ.update({**fx.env, "PROMETHEUS_MULTIPROC_DIR": str(prom)})
        from bench.apps.suite import application

        auth = {"Authorization": fx.bearer}
        body = json.dumps({"title": "written under load", "body": "a short note " * 4})
        kinds = {
            "authenticated GET (no DB)": wsgi_caller(
                application, "GET", "/v1/bench/ping", auth, ""
            ),
            "DB-backed GET": wsgi_caller(application, "GET", f"/v1/notes/{fx.note_id}", auth, ""),
            "write": wsgi_caller(application, "POST", "/v1/notes", auth, body),
        }
        trips = count_round_trips()
        variants = steps(application)
        for call in kinds.values():  # warm: imports, pool, first-use paths
            for _ in range(50):
                call()
        if args.profile:
            call = kinds[args.profile]
            profiler = cProfile.Profile(time.process_time)  # CPU, not waits
            profiler.enable()
            for _ in range(args.requests):
                call()
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(args.top)
            print(out.getvalue())
            return 0
        best: dict[tuple[str, str], dict[str, float]] = {}
        for _ in range(args.rounds):
            for step, apply in variants.items():
                apply()
                for name, call in kinds.items():
                    if name.startswith("authenticated") and not step.startswith("before"):
                        continue  # no database: the same in every step
                    row = measure(call, args.requests, trips, fx.dependency_pids)
                    key = (step, name)
                    if key not in best or row["app_us"] < best[key]["app_us"]:
                        best[key] = row
        print(f"load average {os.getloadavg()[0]:.1f}; {args.requests} requests x {args.rounds}")
        print("| step | request | app CPU us/req | PG+Redis CPU us/req | PG round trips |")
        print("|---|---|---:|---:|---:|")
        for (step, name), row in best.items():
            rt = f"{row['round_trips']:.1f}" if "without the wait" not in step else "-"
            print(f"| {step} | {name} | {row['app_us']:.0f} | {row['deps_us']:.0f} | {rt} |")
        if args.json:
            args.json.write_text(json.dumps({" / ".join(k): v for k, v in best.items()}, indent=2))
    return 0


def measure(call: Call, n: int, trips: list[int], pids: list[int]) -> dict[str, float]:
    """`n` requests: CPU of this process and of the dependencies, round trips, per request."""
    deps0 = sum(load.tree_cpu_seconds(p) for p in pids)
    trips0, cpu0, wall0 = trips[0], time.process_time(), time.perf_counter()
    statuses = {call() for _ in range(n)}
    cpu1, wall1 = time.process_time(), time.perf_counter()
    deps1 = sum(load.tree_cpu_seconds(p) for p in pids)
    assert statuses <= {200, 201}, statuses
    return {
        "app_us": (cpu1 - cpu0) * 1e6 / n,
        "deps_us": (deps1 - deps0) * 1e6 / n,
        "wall_us": (wall1 - wall0) * 1e6 / n,
        "round_trips": (trips[0] - trips0) / n,
    }


if __name__ == "__main__":
    sys.exit(main())
