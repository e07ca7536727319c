"""Run the whole stack for development: PostgreSQL, Redis, migrations, api, worker, beat.

Usage: `make dev` (or `uv run python scripts/dev.py`). Ctrl-C stops everything.

- APP_ENV defaults to `development`.
- DATABASE_URL / REDIS_URL unset: PostgreSQL / Redis start from the wheels in the venv, with
  data under .dev/ (ports DEV_POSTGRES_PORT=55432 / DEV_REDIS_PORT=56379 when free).
- PORT (default 8000) is the api port on 127.0.0.1; the gunicorn master serves the api's
  metrics on API_METRICS_PORT (default 9809), since the worker keeps METRICS_PORT (9808).
  /metrics on the api port is off as in production; METRICS_ON_API_PORT=true turns it on.
- AI_SIM=1 also starts the AI provider simulator (scripts/provider_sim) on AI_SIM_PORT
  (default 9100), for an AIProvider with baseURL http://127.0.0.1:9100/v1.
- DEV_STOP_GRACE (default 20) is how many seconds children get to stop before SIGKILL; a
  second Ctrl-C skips the wait.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType
from urllib.parse import urlsplit, urlunsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack import PostgresServer, RedisServer
from devstack.process import LOOPBACK, become_subreaper, port_is_free
from devstack.server import ManagedServer, ServerError
from devstack.supervisor import Supervisor, kill_descendants

ROOT = Path(__file__).resolve().parent.parent
DEV_DIR = ROOT / ".dev"
LOG_DIR = DEV_DIR / "logs"


class Stop(Exception):
    """The stack cannot go on; the message says why."""


def main() -> int:
    """Run the stack until Ctrl-C/SIGTERM or until a part of it dies; return the exit code."""
    stop, hurry = threading.Event(), threading.Event()
    _install_signal_handlers(stop, hurry)
    become_subreaper()  # orphans of our children become ours, so the final sweep finds them
    env = dict(os.environ)
    env.setdefault("APP_ENV", "development")
    env["PYTHONUNBUFFERED"] = "1"  # children's logs appear as they happen
    sup = Supervisor(cwd=ROOT, env=env, log_dir=LOG_DIR)
    servers: list[ManagedServer] = []
    try:
        _run(sup, servers, env, stop)
    except Stop as exc:
        sup.say(f"dev: {exc}; stopping the stack")
        return 1
    finally:
        _shutdown(sup, servers, hurry)
    return 0


def _dev_secret_key() -> str:
    """One SECRET_KEY for every process of the dev stack, kept in .dev/ across runs.

    Without it each process would invent its own (Settings does so in development), and
    the JWT signing key and the credential encryption key derived from it would differ
    between gunicorn workers and the Celery worker: a token from one worker would be
    refused by the next.
    """
    path = DEV_DIR / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(48), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip()


def _run(
    sup: Supervisor, servers: list[ManagedServer], env: dict[str, str], stop: threading.Event
) -> None:
    DEV_DIR.mkdir(exist_ok=True)
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = _dev_secret_key()
    if not os.environ.get("DATABASE_URL"):
        pg = PostgresServer(DEV_DIR / "postgres", _port("DEV_POSTGRES_PORT", 55432), fast=False)
        env["DATABASE_URL"] = _start(sup, pg, servers).url
    if not os.environ.get("REDIS_URL"):
        redis = RedisServer(DEV_DIR / "redis", _port("DEV_REDIS_PORT", 56379))
        env["REDIS_URL"] = _start(sup, redis, servers).url
    sup.env.update(env)
    if stop.is_set():
        return

    if not (ROOT / "alembic.ini").exists():
        raise Stop("alembic.ini is missing at the repository root, cannot migrate")
    migrate = sup.run("alembic", [_tool("alembic"), "upgrade", "head"], stop)
    if stop.is_set():
        return
    if migrate.returncode != 0:
        log = _rel(migrate.log_path)
        raise Stop(f"alembic upgrade head failed (exit {migrate.returncode}), see {log}")

    port = int(env.get("PORT", "8000"))
    if not port_is_free(port):
        raise Stop(f"port {port} is in use; free it or set PORT")
    # The api gets the Prometheus multiprocess dir, wiped per run: stale files from dead
    # workers slow every scrape (prometheus/client_python#367).
    api_env = {"METRICS_PORT": str(_api_metrics_port())}
    if "PROMETHEUS_MULTIPROC_DIR" not in env:
        metrics_dir = DEV_DIR / "prometheus-multiproc"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        api_env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    celery = _tool("celery")
    sup.spawn(
        "api",
        [_tool("gunicorn"), "-c", "app/gunicorn_conf.py", "--bind", f"{LOOPBACK}:{port}",
         "app.wsgi:application"],
        env=api_env,
    )  # fmt: skip
    sup.spawn("worker", [celery, "-A", "app.worker:celery_app", "worker", "--loglevel=INFO"])
    sup.spawn(
        "beat",
        [celery, "-A", "app.worker:celery_app", "beat", "--loglevel=INFO",
         "--schedule", str(DEV_DIR / "celerybeat-schedule")],
    )  # fmt: skip

    if env.get("AI_SIM"):
        _spawn_provider_sim(sup, env)
    api_up = _wait_for_api(sup, servers, port, stop)
    sup.say(_table(env, port, servers, api_up))
    while not stop.wait(0.2):
        _check_alive(sup, servers)


def _spawn_provider_sim(sup: Supervisor, env: dict[str, str]) -> None:
    """`make dev AI_SIM=1`: the local OpenAI-compatible test server (docs/ai.md, issue 5)."""
    sim_port = int(env.get("AI_SIM_PORT", "9100"))
    if not port_is_free(sim_port):
        raise Stop(f"port {sim_port} is in use; free it or set AI_SIM_PORT")
    sup.spawn(
        "provider-sim",
        [sys.executable, "-m", "provider_sim", "--port", str(sim_port), "--stream-delay", "0.02"],
        env={"PYTHONPATH": str(ROOT / "scripts")},
    )
    sup.say(
        f"dev: provider simulator on http://{LOOPBACK}:{sim_port} (baseURL "
        f"http://{LOOPBACK}:{sim_port}/v1, models sim-small/sim-large; docs/ai.md)"
    )


def _start(sup: Supervisor, server: ManagedServer, servers: list[ManagedServer]) -> ManagedServer:
    t0 = time.monotonic()
    try:
        server.start()
    except ServerError as exc:
        raise Stop(f"{server.name} did not start: {exc}") from None
    servers.append(server)
    sup.say(f"dev: {server.name} ready on port {server.port} in {time.monotonic() - t0:.1f}s")
    return server


def _wait_for_api(
    sup: Supervisor, servers: list[ManagedServer], port: int, stop: threading.Event
) -> bool:
    deadline = time.monotonic() + 90
    while not stop.is_set() and time.monotonic() < deadline:
        _check_alive(sup, servers)
        if _answers_http(port):
            return True
        stop.wait(0.3)
    return False


def _answers_http(port: int) -> bool:
    """Any HTTP response counts: gunicorn's master accepts connections before a worker is up."""
    conn = http.client.HTTPConnection(LOOPBACK, port, timeout=2)
    try:
        conn.request("GET", "/livez")
        conn.getresponse().read()
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()
    return True


def _check_alive(sup: Supervisor, servers: list[ManagedServer]) -> None:
    dead = sup.first_exited()
    if dead is not None:
        raise Stop(
            f"{dead.name} exited unexpectedly (exit {dead.returncode}), see {_rel(dead.log_path)}"
        )
    for server in servers:
        if not server.running:
            raise Stop(f"{server.name} exited unexpectedly, see {_rel(server.log_path)}")


def _shutdown(sup: Supervisor, servers: list[ManagedServer], hurry: threading.Event) -> None:
    if sup.children or servers:
        sup.say("dev: stopping (Ctrl-C again to skip waiting)")
    grace = float(os.environ.get("DEV_STOP_GRACE", "20"))
    killed = sup.stop_all(grace, hurry)
    if killed:
        why = "on a second signal" if hurry.is_set() else f"after {grace:.0f}s"
        sup.say(f"dev: killed {why}: {', '.join(killed)}")
    for server in reversed(servers):
        try:
            server.stop(timeout=2.0 if hurry.is_set() else 15.0)
        except ServerError as exc:
            sup.say(f"dev: {exc}")
    stragglers = kill_descendants()
    if stragglers:
        sup.say(f"dev: killed leftover processes {stragglers}")
    sup.say("dev: stopped")


def _install_signal_handlers(stop: threading.Event, hurry: threading.Event) -> None:
    first: list[float] = []

    def handler(_signum: int, _frame: FrameType | None) -> None:
        # A wrapper may pass on the same Ctrl-C the terminal already sent us (uv run, make,
        # timeout): only a signal a second or more after the first one means "hurry".
        if first and time.monotonic() - first[0] >= 1.0:
            hurry.set()
        if not first:
            first.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGHUP, handler)


def _port(variable: str, preferred: int) -> int | None:
    """A stable port across runs when it is free, else None (devstack picks one)."""
    port = int(os.environ.get(variable, preferred))
    return port if port_is_free(port) else None


def _tool(name: str) -> str:
    """The venv's copy of a console script, whatever PATH says."""
    candidate = Path(sys.executable).parent / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if found is None:
        raise Stop(f"`{name}` is not installed; run `make venv`")
    return found


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _api_metrics_port() -> int:
    """Where the gunicorn master serves the api's metrics (the worker has METRICS_PORT)."""
    return int(os.environ.get("API_METRICS_PORT", "9809"))


def _table(env: dict[str, str], port: int, servers: list[ManagedServer], api_up: bool) -> str:
    base = f"http://{LOOPBACK}:{port}"
    worker_metrics = int(env.get("METRICS_PORT", "9808"))
    owned = {s.name: s for s in servers}
    logs = ", ".join(_rel(LOG_DIR / f"{n}.log") for n in ("api", "worker", "beat", "alembic"))
    rows = [
        ("API", base + ("" if api_up else "  (not answering yet, see the api log)")),
        ("Docs", f"{base}/docs"),
        (
            "Metrics",
            f"http://{LOOPBACK}:{_api_metrics_port()}/metrics (api)  "
            f"http://{LOOPBACK}:{worker_metrics}/metrics (worker)",
        ),
        ("Probes", f"{base}/livez  {base}/readyz"),
        ("PostgreSQL", _without_password(env["DATABASE_URL"]) + _origin(owned.get("postgres"))),
        ("Redis", _without_password(env["REDIS_URL"]) + _origin(owned.get("redis"))),
        ("APP_ENV", env["APP_ENV"]),
        ("Logs", logs),
    ]
    rows += [(f"{s.name} log", _rel(s.log_path)) for s in servers]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k:<{width}}  {v}" for k, v in rows]
    rule = "-" * 72
    return "\n".join(
        [rule, "  Structured API dev stack", *lines, "  Ctrl-C stops everything.", rule]
    )


def _origin(server: ManagedServer | None) -> str:
    return f"  (started here, data {_rel(server.data_dir)})" if server else "  (from environment)"


if __name__ == "__main__":
    sys.exit(main())
