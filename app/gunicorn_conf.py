"""gunicorn settings; every value can be overridden by the standard GUNICORN_* flags.

Timeouts are chosen to fit the chart: preStop sleep 5 s + graceful_timeout 20 s stay
below terminationGracePeriodSeconds 30 s.

The master also serves the Prometheus scrape endpoint of the whole pod on
`METRICS_PORT` (`when_ready`), not on the API port: an Ingress that routes `/` to the
api Service never reaches it (docs/observability.md).
"""

import os
from typing import Any, Final

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


#: Attribute of gunicorn's arbiter that keeps the metrics server: a SIGHUP re-executes
#: this file (new module globals) but runs `when_ready` only once, at start.
_METRICS_HTTPD: Final = "sapi_metrics_httpd"


def when_ready(server: Any) -> None:
    """Serve every worker's metrics, merged, on METRICS_PORT from the master.

    prometheus-client multiprocess docs: a registry that holds nothing but a
    `MultiProcessCollector` reads every process's files at each scrape. The master
    records no metric itself, outlives its workers and serves no API traffic, so one
    scrape of this port answers for the pod while the API port has no `/metrics` at all
    (unless METRICS_ON_API_PORT). It starts before the first fork; workers close their
    inherited copy of the listening socket in `post_fork`.
    """
    from app.settings import Settings

    settings = Settings()
    if not settings.metrics_enabled:
        return
    from prometheus_client import CollectorRegistry, multiprocess, start_http_server

    # Nothing else registers here: a metric in this registry would be exported twice.
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
        registry, path=os.environ["PROMETHEUS_MULTIPROC_DIR"]
    )
    try:
        httpd, _thread = start_http_server(
            settings.metrics_port, addr=settings.metrics_address, registry=registry
        )
    except OSError as exc:
        # As in the Celery worker: a busy port must not stop the API; the scrape target
        # shows as down instead.
        server.log.error(
            "api metrics server not started on %s:%d: %s",
            settings.metrics_address,
            settings.metrics_port,
            exc,
        )
        return
    setattr(server, _METRICS_HTTPD, httpd)
    server.log.info(
        "metrics of every worker on http://%s:%d/metrics",
        settings.metrics_address,
        httpd.server_port,
    )


def post_fork(server: object, _worker: object) -> None:
    """Close the master's metrics socket, then build this worker's tracer provider.

    Only the master accepts on that socket; a worker keeping it open would keep the port
    bound (connections queued, never answered) if the master died before it.
    The tracer provider is built after the fork: BatchSpanProcessor owns a thread.
    """
    httpd = getattr(server, _METRICS_HTTPD, None)
    if httpd is not None:
        httpd.socket.close()

    from app.core.observability import tracing
    from app.settings import Settings

    tracing.install_provider(Settings())


def child_exit(_server: object, worker: object) -> None:
    """Drop the dead worker's live gauges (prometheus-client multiprocess docs)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[attr-defined,no-untyped-call]


def worker_exit(_server: object, _worker: object) -> None:
    """Flush spans still queued in the worker's BatchSpanProcessor before it exits."""
    from app.core.observability import tracing

    tracing.shutdown()
