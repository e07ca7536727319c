"""Operator latency: custom-resource change -> enforced by the API, and a cold start.

    uv run python bench/operator_latency.py                  # 50 edits, 500 resources
    uv run python bench/operator_latency.py --edits 20 --cold 100 --json out.json

Everything real, on loopback: etcd + kube-apiserver (scripts/kubetools, built into
.cache/control-plane), PostgreSQL and Redis (scripts/devstack wheels, or DATABASE_URL /
REDIS_URL), the API served from a thread of this process, and `python -m sapi_operator`
as a child process watching one namespace.

1. **Edit -> enforced.** One RateLimitPolicy on `GET /versions`; each edit PATCHes its
   request quota straight to the apiserver (no kubectl process start in the figure),
   then the bench polls the API until `RateLimit-Policy` advertises the new quota. Timed
   from the PATCH response (the change is in etcd) to the first answer enforcing it:
   watch event -> Kopf -> validate -> PostgreSQL upsert -> Redis announcement -> the
   API's snapshot reload. p50 / p95 / max over `--edits`.
2. **Cold start.** The operator is stopped, `--cold` policies are created, the operator
   is started: time until every row is in PostgreSQL and every resource reports
   `Ready=True` for its generation.

Nothing to compare against: the usual Flask stack (Flask-Limiter) has no live config to
push. Not a test; docs/operator.md records a run.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "scripts"), str(ROOT / "operator")]

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from devstack import PostgresServer, RedisServer  # noqa: E402
from kubetools import ControlPlane  # noqa: E402

from app.factory import create_app  # noqa: E402
from app.settings import Settings  # noqa: E402
from tests.support.processes import (  # noqa: E402
    ManagedProcess,
    child_env,
    free_port,
    serve_in_thread,
    wait_for,
)

NAMESPACE = "bench"
PLURAL = "/apis/structured-api.io/v1alpha1/namespaces/bench/ratelimitpolicies"


def policy(name: str, requests: int) -> dict[str, Any]:
    """A RateLimitPolicy on GET /versions, keyed by client IP."""
    return {
        "apiVersion": "structured-api.io/v1alpha1",
        "kind": "RateLimitPolicy",
        "metadata": {"name": name},
        "spec": {
            "rules": [
                {
                    "name": "versions",
                    "match": {"paths": ["/versions"], "methods": ["GET"]},
                    "key": "ip",
                    "limits": [{"requests": requests, "window": "1m"}],
                }
            ]
        },
    }


def quota(api: httpx.Client, name: str) -> int | None:
    """The quota the API advertises for policy `name` on GET /versions."""
    header = api.get("/versions").headers.get("RateLimit-Policy", "")
    for item in header.split(","):
        label, _, params = item.strip().partition(";")
        if label.strip('"').startswith(f"{name}."):
            return int(dict(p.split("=") for p in params.split(";"))["q"])
    return None


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


@contextmanager
def services(work: Path) -> Iterator[tuple[str, str]]:
    """DATABASE_URL / REDIS_URL, or servers started from the wheels."""
    with ExitStack() as stack:
        db_url = os.environ.get("DATABASE_URL")
        redis_url = os.environ.get("REDIS_URL")
        if not db_url:
            db_url = stack.enter_context(PostgresServer(work / "pg")).url
        if not redis_url:
            redis_url = stack.enter_context(RedisServer(work / "redis")).url
        cfg = Config(str(ROOT / "alembic.ini"))
        cfg.attributes.update(database_url=db_url, configure_logger=False)
        command.upgrade(cfg, "head")
        yield db_url, redis_url


class Operator:
    """`python -m sapi_operator` watching the bench namespace as the admin."""

    def __init__(self, cp: ControlPlane, work: Path, env: dict[str, str]) -> None:
        self.cp, self.work, self.env, self.runs = cp, work, env, 0
        self.process: ManagedProcess | None = None

    def start(self) -> None:
        """Start and wait for the liveness endpoint."""
        self.runs += 1
        port = free_port()
        env = {**self.env, "OPERATOR_LIVENESS_PORT": str(port), "METRICS_PORT": str(free_port())}
        self.process = ManagedProcess(
            "operator",
            [sys.executable, "-m", "sapi_operator"],
            env,
            self.work / f"operator-{self.runs}.log",
            cwd=ROOT,
        ).start()

        def live() -> bool:
            assert self.process is not None
            self.process.check_alive()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(live, timeout=90, interval=0.05, what="operator liveness")

    def stop(self) -> None:
        """SIGTERM and wait."""
        if self.process is not None and self.process.running:
            self.process.stop()


def edits(kube: httpx.Client, api: httpx.Client, count: int) -> dict[str, float]:
    """p50/p95/max seconds from a PATCH being stored to the API enforcing it."""
    name = "edit-latency"
    kube.post(PLURAL, json=policy(name, 100_000)).raise_for_status()
    wait_for(lambda: quota(api, name) == 100_000, timeout=30, interval=0.01, what="first policy")
    samples: list[float] = []
    for i in range(1, count + 1):
        want = 100_000 + i
        patch = {"spec": {"rules": policy(name, want)["spec"]["rules"]}}
        kube.patch(
            f"{PLURAL}/{name}",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ).raise_for_status()
        stored = time.perf_counter()
        while quota(api, name) != want:
            if time.perf_counter() - stored > 30:
                raise SystemExit(f"edit {i} not enforced within 30 s")
        samples.append(time.perf_counter() - stored)
    kube.delete(f"{PLURAL}/{name}").raise_for_status()
    return {
        "edits": count,
        "p50_s": statistics.median(samples),
        "p95_s": percentile(samples, 0.95),
        "max_s": max(samples),
        "mean_s": statistics.fmean(samples),
    }


def cold_start(
    kube: httpx.Client, operator: Operator, engine: sa.Engine, count: int
) -> dict[str, float]:
    """Seconds from starting the operator to `count` rows stored and all Ready."""
    operator.stop()
    for i in range(count):
        kube.post(PLURAL, json=policy(f"cold-{i:04d}", 1000 + i)).raise_for_status()

    def rows() -> int:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    sa.text("SELECT count(*) FROM config_object WHERE name LIKE 'cold-%'")
                ).scalar_one()
            )

    def ready() -> int:
        items = kube.get(PLURAL).json()["items"]
        done = 0
        for item in items:
            status = item.get("status") or {}
            ok = any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in status.get("conditions", [])
            )
            done += ok and status.get("observedGeneration") == item["metadata"]["generation"]
        return done

    began = time.perf_counter()
    operator.start()
    started = time.perf_counter() - began
    stored = wait_for(lambda: rows() >= count, timeout=900, interval=0.2, what="rows")
    all_ready = wait_for(lambda: ready() >= count, timeout=900, interval=0.5, what="Ready")
    return {
        "resources": count,
        "operator_start_s": started,
        "all_rows_stored_s": started + stored,
        "all_ready_s": started + stored + all_ready,
        "per_resource_ms": 1000 * (started + stored) / count,
    }


def main() -> None:
    """Run both scenarios and print a table (and JSON if asked)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--edits", type=int, default=50)
    parser.add_argument("--cold", type=int, default=500)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep", type=Path, help="keep logs and data in this directory")
    args = parser.parse_args()
    secret = secrets.token_urlsafe(48)
    with ExitStack() as stack:
        if args.keep:
            work = args.keep
            work.mkdir(parents=True, exist_ok=True)
        else:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-op-")))
        db_url, redis_url = stack.enter_context(services(work))
        cp = stack.enter_context(ControlPlane(work / "cp"))
        cp.kubectl("apply", "-f", str(ROOT / "operator" / "crds"))
        cp.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
        cp.kubectl("create", "namespace", NAMESPACE)
        settings = Settings(
            app_env="test",
            database_url=db_url,
            redis_url=redis_url,
            secret_key=secret,
            log_level="WARNING",
        )
        app = create_app(settings)
        live = stack.enter_context(serve_in_thread(app))
        stack.callback(app.extensions["config_store"].stop)
        env = child_env(
            APP_ENV="test",
            DATABASE_URL=db_url,
            REDIS_URL=redis_url,
            SECRET_KEY=secret,
            KUBECONFIG=str(cp.kubeconfig),
            OPERATOR_NAMESPACES=NAMESPACE,
            PYTHONPATH=f"{ROOT / 'operator'}:{ROOT}",
            LOG_LEVEL=os.environ.get("BENCH_LOG_LEVEL", "WARNING"),
            OPERATOR_DRIFT_INTERVAL="300",
        )
        operator = Operator(cp, work, env)
        stack.callback(operator.stop)
        operator.start()
        kube = stack.enter_context(
            httpx.Client(
                base_url=cp.server,
                headers={"Authorization": f"Bearer {cp.token}"},
                verify=str(cp.pki.ca_cert),
                timeout=30,
            )
        )
        api = stack.enter_context(httpx.Client(base_url=live.url, timeout=10))
        engine = sa.create_engine(db_url)
        stack.callback(engine.dispose)
        results = {"edit_to_enforced": edits(kube, api, args.edits)}
        results["cold_start"] = cold_start(kube, operator, engine, args.cold)
        load = os.getloadavg()
        results["machine"] = {"cpus": os.cpu_count() or 0, "loadavg_1m": load[0]}
    e, c = results["edit_to_enforced"], results["cold_start"]
    print(
        f"edit -> enforced over {e['edits']} edits: p50 {e['p50_s'] * 1000:.0f} ms, "
        f"p95 {e['p95_s'] * 1000:.0f} ms, max {e['max_s'] * 1000:.0f} ms"
    )
    print(
        f"cold start, {c['resources']:.0f} RateLimitPolicies: operator up "
        f"{c['operator_start_s']:.1f} s, all rows stored {c['all_rows_stored_s']:.1f} s "
        f"({c['per_resource_ms']:.1f} ms each), all Ready {c['all_ready_s']:.1f} s"
    )
    print(f"machine: {results['machine']}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
