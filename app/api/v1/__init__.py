"""Version 1 of the public API (`/v1/...`)."""

from __future__ import annotations

from flask import Blueprint, g

bp = Blueprint("v1", __name__, url_prefix="/v1")


@bp.before_request
def _mark_version() -> None:
    g.api_version = "1.0"


from app.api.v1 import admin_users, auth  # noqa: E402 - after `bp` exists

bp.register_blueprint(auth.bp)
bp.register_blueprint(admin_users.bp)

from app.api.v1 import admin_config  # noqa: E402 - runtime config (issue 4)

bp.register_blueprint(admin_config.bp)

from app.api.v1 import limits  # noqa: E402 - rate limits (issue 4)

bp.register_blueprint(limits.bp)

from app.api.v1 import admin_ai_credentials, admin_dead_letters, ai  # noqa: E402 - issue 5

bp.register_blueprint(ai.bp)
bp.register_blueprint(admin_dead_letters.bp)
bp.register_blueprint(admin_ai_credentials.bp)
