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
