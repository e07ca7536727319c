"""`/.well-known/jwks.json`: the public keys that verify access tokens (RFC 7517)."""

from __future__ import annotations

from typing import Final

from flask import Blueprint, Response, current_app

from app.auth.state import auth_state
from app.core.encoding import dumps

bp = Blueprint("wellknown", __name__, url_prefix="/.well-known")

# External verifiers may cache the set this long; a two-phase rotation (docs/auth.md)
# waits at least this long between publishing the next key and signing with it.
MAX_AGE: Final = 300


@bp.get("/jwks.json")
def jwks() -> Response:
    """The current and previous verification keys (not enveloped: JWKS clients read it raw)."""
    response = current_app.response_class(
        dumps(auth_state().keyring.jwks()), mimetype="application/jwk-set+json"
    )
    response.headers["Cache-Control"] = f"public, max-age={MAX_AGE}"
    return response
