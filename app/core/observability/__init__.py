"""Metrics, traces and logs behind one seam, cheap when disabled.

`metrics.py` (every Prometheus object), `multiproc.py` (gunicorn multiprocess mode),
`endpoint.py` (`GET /metrics` on the API port, opt-in), `logging.py` (JSON lines with
trace and request ids), `tracing.py` (OpenTelemetry), `celery_signals.py` (task metrics
and trace propagation), `extension.py` (`init_app`: the HTTP metrics hooks). See
docs/observability.md. Nothing is imported here: the operator uses `metrics.py` without
Flask.
"""
