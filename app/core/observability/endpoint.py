"""`GET /metrics` on the API port, only with METRICS_ON_API_PORT (off by default).

The scrape endpoint proper is the gunicorn master's METRICS_PORT (app/gunicorn_conf.py),
which an Ingress routing `/` to the api Service cannot reach. This blueprint
is for installs that cannot scrape a second port, e.g. `flask run` without gunicorn.
"""

from __future__ import annotations

from flask import Blueprint, Response, request
from prometheus_client.exposition import choose_encoder

from app.core.observability import multiproc

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics() -> Response:
    """All workers' samples merged (multiprocess mode), else this process's registry.

    The exposition format, not the JSON envelope: scrapers expect it. The encoder follows
    the scraper's `Accept` header (text 0.0.4 by default, OpenMetrics when asked).
    Not in the OpenAPI document for the same reason.
    """
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    body = encoder(multiproc.scrape_registry())
    return Response(body, status=200, content_type=content_type)
