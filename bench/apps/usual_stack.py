"""The stack a Flask user would assemble instead (docs/performance.md).

* Flask-Limiter on Redis, moving-window strategy (exact, like ours), headers on,
  keyed by client address (its documented default);
* Flask-JWT-Extended, `@jwt_required()` with its default HS256;
* prometheus-flask-exporter in gunicorn multiprocess mode (as our app);
* OpenTelemetry Flask instrumentation; `OTEL_TRACES_SAMPLER(_ARG)` choose the sampler
  (OTel's default is parentbased_always_on). Spans are recorded but not exported, the
  same as our app's run, so neither side pays for an exporter.

Environment: REDIS_URL, BENCH_JWT_SECRET, PROMETHEUS_MULTIPROC_DIR.
"""

import os

from flask import Flask, jsonify
from flask_jwt_extended import JWTManager, jwt_required
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics

application = Flask(__name__)
application.config["JWT_SECRET_KEY"] = os.environ["BENCH_JWT_SECRET"]
JWTManager(application)
limiter = Limiter(
    get_remote_address,
    app=application,
    storage_uri=os.environ["REDIS_URL"],
    strategy="moving-window",
    headers_enabled=True,
)
GunicornPrometheusMetrics(application)
trace.set_tracer_provider(TracerProvider())  # sampler from OTEL_TRACES_SAMPLER(_ARG)
FlaskInstrumentor().instrument_app(application)


@application.get("/ping")
@jwt_required()
@limiter.limit("100000000 per minute")
def ping():  # type: ignore[no-untyped-def]
    """The same small JSON answer, authenticated, limited, metered, traced."""
    return jsonify(pong=True)
