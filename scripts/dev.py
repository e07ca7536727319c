"""Run the whole stack for development: PostgreSQL, Redis, migrations, api, worker, beat,
and the AI provider simulator with a development-only provider for it.

Usage: `make dev` (or `uv run python scripts/dev.py`). Ctrl-C stops everything.

- APP_ENV defaults to `development`.
- DEV_DIR (default .dev/) holds the data, logs and `env`: the settings every process of
  the stack got (APP_ENV, SECRET_KEY, DATABASE_URL, REDIS_URL, ...), which `uv run flask
  ...` reads (app/cli_app.py), so the CLI talks to this stack with nothing exported.
- DATABASE_URL / REDIS_URL unset: PostgreSQL / Redis start from the wheels in the venv, with
  data under DEV_DIR (ports DEV_POSTGRES_PORT=55432 / DEV_REDIS_PORT=56379 when free).
- PORT (default 8000) is the api port on 127.0.0.1; the gunicorn master serves the api's
  metrics on API_METRICS_PORT (default 9809), since the worker keeps METRICS_PORT (9808).
  /metrics on the api port is off as in production; METRICS_ON_API_PORT=true turns it on.
- The AI provider simulator (scripts/provider_sim) runs on AI_SIM_PORT (default 9100, another
  free port when taken) and `flask ai dev-provider` registers the AIProvider
  `dev-simulator` for it (models sim-small, sim-large), so `POST /v1/ai/generate` answers on
  a fresh clone. AI_SIM=0 starts neither.
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
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent))

from devstack import PostgresServer, RedisServer
from devstack.process import LOOPBACK, SignalFlag, become_subreaper, free_port, port_is_free
from devstack.server import ManagedServer, ServerError
from devstack.supervisor import Supervisor, kill_descendants

ROOT = Path(__file__).resolve().parent.parent
DEV_DIR = Path(os.environ.get("DEV_DIR") or ROOT / ".dev").resolve()
LOG_DIR = DEV_DIR / "logs"
#: The settings of the stack's processes, for the CLI (app/cli_app.py reads it).
ENV_FILE = DEV_DIR / "env"
#: Settings copied into ENV_FILE when the stack's processes got them.
SHARED_SETTINGS = ("APP_ENV", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AI_ALLOWED_HTTP_HOSTS")


class Stop(Exception):
    """The stack cannot go on; the message says why."""


def main() -> int:
    """Run the stack until Ctrl-C/SIGTERM or until a part of it dies; return the exit code."""
    stop, hurry = SignalFlag(), SignalFlag()
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
    sup: Supervisor, servers: list[ManagedServer], env: dict[str, str], stop: SignalFlag
) -> None:
    DEV_DIR.mkdir(parents=True, exist_ok=True)
    if not env.get("SECRET_KEY"):
        env["SECRET_KEY"] = _dev_secret_key()
    if not os.environ.get("DATABASE_URL"):
        pg = PostgresServer(DEV_DIR / "postgres", _port("DEV_POSTGRES_PORT", 55432), fast=False)
        env["DATABASE_URL"] = _start(sup, pg, servers).url
    if not os.environ.get("REDIS_URL"):
        redis = RedisServer(DEV_DIR / "redis", _port("DEV_REDIS_PORT", 56379))
        env["REDIS_URL"] = _start(sup, redis, servers).url
    sim_port = _sim_port(env)
    if sim_port is not None:
        # The simulator speaks plain http on loopback; only this host may be reached so.
        env.setdefault("AI_ALLOWED_HTTP_HOSTS", LOOPBACK)
    sup.env.update(env)
    _write_env_file(env)
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
    if sim_port is not None:
        _register_dev_provider(sup, sim_port, stop)
        if stop.is_set():
            return

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

    if sim_port is not None:
        _spawn_provider_sim(sup, sim_port)
    api_up = _wait_for_api(sup, servers, port, stop)
    sup.say(_table(env, port, servers, api_up, sim_port))
    while not stop.wait(0.2):
        _check_alive(sup, servers)


def _sim_port(env: dict[str, str]) -> int | None:
    """The simulator's port, or None when AI_SIM=0 turns it off."""
    if env.get("AI_SIM", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    wanted = int(env.get("AI_SIM_PORT", "9100"))
    return wanted if port_is_free(wanted) else free_port()


def _sim_base_url(sim_port: int) -> str:
    return f"http://{LOOPBACK}:{sim_port}/v1"


def _register_dev_provider(sup: Supervisor, sim_port: int, stop: SignalFlag) -> None:
    """Point the development-only AIProvider `dev-simulator` at this run's simulator."""
    args = [_tool("flask"), "ai", "dev-provider", "--base-url", _sim_base_url(sim_port)]
    done = sup.run("dev-provider", args, stop)
    if done.returncode != 0 and not stop.is_set():
        log = _rel(done.log_path)
        raise Stop(f"registering the dev AI provider failed (exit {done.returncode}), see {log}")


def _spawn_provider_sim(sup: Supervisor, sim_port: int) -> None:
    """The local OpenAI-compatible provider simulator (docs/ai.md)."""
    sup.spawn(
        "provider-sim",
        [sys.executable, "-m", "provider_sim", "--port", str(sim_port), "--stream-delay", "0.02"],
        env={"PYTHONPATH": str(ROOT / "scripts")},
    )


def _write_env_file(env: dict[str, str]) -> None:
    """Write the settings the CLI needs to reach this stack (owner-only: it holds secrets)."""
    lines = [
        "# Written by `make dev` (scripts/dev.py): the settings of the dev stack's processes.",
        "# `uv run flask ...` reads it (app/cli_app.py); exported variables win over it.",
    ]
    lines += [f"{k}={_quoted(env[k])}" for k in SHARED_SETTINGS if env.get(k)]
    tmp = ENV_FILE.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    tmp.chmod(0o600)
    tmp.replace(ENV_FILE)


def _quoted(value: str) -> str:
    """`value` for a dotenv file: single quotes keep it literal (no $ expansion)."""
    if "'" in value or "\n" in value:
        raise Stop(f"cannot write a value with a quote or newline to {_rel(ENV_FILE)}")
    return f"'{value}'"


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
    sup: Supervisor, servers: list[ManagedServer], port: int, stop: SignalFlag
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


def _shutdown(sup: Supervisor, servers: list[ManagedServer], hurry: SignalFlag) -> None:
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


def _install_signal_handlers(stop: SignalFlag, hurry: SignalFlag) -> None:
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
    # rpartition, not urlsplit: a redis+sentinel:// URL names several host:port pairs.
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}@{tail}"


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _api_metrics_port() -> int:
    """Where the gunicorn master serves the api's metrics (the worker has METRICS_PORT)."""
    return int(os.environ.get("API_METRICS_PORT", "9809"))


def _table(
    env: dict[str, str],
    port: int,
    servers: list[ManagedServer],
    api_up: bool,
    sim_port: int | None,
) -> str:
    base = f"http://{LOOPBACK}:{port}"
    worker_metrics = int(env.get("METRICS_PORT", "9808"))
    owned = {s.name: s for s in servers}
    logs = ", ".join(_rel(LOG_DIR / f"{n}.log") for n in ("api", "worker", "beat", "alembic"))
    ai = (
        f"provider simulator {_sim_base_url(sim_port)} as AIProvider `dev-simulator` "
        "(models sim-small, sim-large)"
        if sim_port is not None
        else "simulator off (AI_SIM=0)"
    )
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
        ("AI", ai),
        ("APP_ENV", env["APP_ENV"]),
        ("CLI settings", f"{_rel(ENV_FILE)} (read by `uv run flask ...`)"),
        ("Logs", logs),
    ]
    rows += [(f"{s.name} log", _rel(s.log_path)) for s in servers]
    width = max(len(k) for k, _ in rows)
    lines = [f"  {k:<{width}}  {v}" for k, v in rows]
    rule = "-" * 72
    return "\n".join(
        [rule, "  Structured API dev stack", *lines, "", *next_steps(port, sim_port is not None),
         "", "  Ctrl-C stops everything.", rule]
    )  # fmt: skip


def next_steps(port: int, ai: bool) -> list[str]:
    """The banner's next three things to do; README "Try it" runs the same commands."""
    host = f"{LOOPBACK}:{port}"
    steps = [
        '  Next steps (in another terminal; README.md "Try it" goes further):',
        "  1. Create the first admin (asks for a password, 12+ characters):",
        "       uv run flask users create-admin --email admin@example.com",
        f"  2. Open the interactive docs: http://{host}/docs",
    ]
    if ai:
        steps += [
            "  3. Call the AI endpoint with an API key of that admin:",
            "       KEY=$(uv run flask api-keys create --email admin@example.com --name try-it"
            " --key-only)",
            "       curl -s -w '\\n' "
            f'{host}/v1/ai/generate -H "authorization: Bearer $KEY"'
            " -H 'content-type: application/json' -d '{\"prompt\": \"Hello\"}'",
        ]
    else:
        steps.append("  3. AI is off (AI_SIM=0): declare an AIProvider first (docs/ai.md).")
    return steps


def _origin(server: ManagedServer | None) -> str:
    return f"  (started here, data {_rel(server.data_dir)})" if server else "  (from environment)"


if __name__ == "__main__":
    sys.exit(main())
