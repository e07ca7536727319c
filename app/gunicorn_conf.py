"""gunicorn settings; every value can be overridden by the standard GUNICORN_* flags.

Timeouts are chosen to fit the chart: preStop sleep 5 s + graceful_timeout 20 s stay
below terminationGracePeriodSeconds 30 s.
"""

import os

bind = os.environ.get("GUNICORN_BIND", f"127.0.0.1:{os.environ.get('PORT', '8000')}")
workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
worker_class = "gthread" if threads > 1 else "sync"
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
keepalive = 5
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "0"))
max_requests_jitter = 100 if max_requests else 0
accesslog = None  # the app writes one JSON access line per request
errorlog = "-"
preload_app = False  # each worker builds its own engines: nothing crosses fork
# gunicorn 27's control socket defaults to ~/.gunicorn/gunicorn.ctl: shared by every
# gunicorn of a host and unwritable under readOnlyRootFilesystem. Nothing uses it.
control_socket_disable = True

# Prometheus multiprocess mode (docs/observability.md): every worker writes its samples
# to this directory and GET /metrics merges them. prometheus-client reads the variable
# when a worker imports it, so it is set here, in the master, before any fork.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    import tempfile

    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sapi-prometheus-")


def on_starting(_server: object) -> None:
    """Empty the multiprocess directory: files of a previous run would be summed forever.

    prometheus/client_python#367: leftover files also made one scrape take 40 s. Inline
    (no app import): the master stays free of the app's modules and state.
    """
    from pathlib import Path

    path = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def post_fork(_server: object, _worker: object) -> None:
    """Build this worker's tracer provider after the fork (BatchSpanProcessor owns a thread)."""
    from app.config import Settings
    from app.core.observability import tracing

    tracing.install_provider(Settings())


def child_exit(_server: object, worker: object) -> None:
    """Drop the dead worker's live gauges (prometheus-client multiprocess docs)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def worker_exit(_server: object, _worker: object) -> None:
    """Flush spans still queued in the worker's BatchSpanProcessor before it exits."""
    from app.core.observability import tracing

    tracing.shutdown()
