"""Version 1 of the public API (`/v1/...`): the features' blueprints, assembled.

Each feature owns its views (`app/<feature>/views.py`, `admin_views.py`); this package only
decides what `/v1` serves. `/v2` carries these over (app/api/v2).
"""

from __future__ import annotations

from flask import Blueprint, g

from app.ai import admin_views as ai_admin
from app.ai import views as ai
from app.ai.dead_letters import views as dead_letters_admin
from app.auth import admin_views as users_admin
from app.auth import views as auth
from app.config_store import views as config_admin
from app.ratelimit import views as limits

bp = Blueprint("v1", __name__, url_prefix="/v1")


@bp.before_request
def _mark_version() -> None:
    g.api_version = "1.0"


for feature in (auth, users_admin, config_admin, limits, ai, dead_letters_admin, ai_admin):
    bp.register_blueprint(feature.bp)
