"""This project's full pipeline around one authenticated GET (`/v1/bench/ping`).

The real `create_app()`: request id, security headers, identify (JWT, Ed25519, with the
Redis revocation check), rate limit (one GCRA script call), version lifecycle,
authorize, the envelope, Prometheus (multiprocess) and, when TRACING_ENABLED, OTel.
Everything is configured by the environment like a deployment.
"""

from flask import Blueprint, Response

from app.auth.decorators import require_auth
from app.core.openapi import operation
from app.core.responses import ok
from app.factory import create_app

bp = Blueprint("bench", __name__, url_prefix="/v1/bench")


@bp.get("/ping")
@require_auth(scopes=["profile:read"])
@operation("Benchmark ping", tags=["bench"], auth=True)
def ping() -> Response:
    """The same small answer, in the envelope."""
    return ok({"pong": True})


application = create_app()
application.register_blueprint(bp)
