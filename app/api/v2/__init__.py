"""Version 2 of the public API (`/v2/...`): only the endpoints whose contract changed.

Everything else is still served under `/v1`; `GET /versions/1.0/changes-to/2.0` lists
what moved. See docs/versioning.md.
"""

from __future__ import annotations

from flask import Blueprint, g

bp = Blueprint("v2", __name__, url_prefix="/v2")


@bp.before_request
def _mark_version() -> None:
    g.api_version = "2.0"


from app.api.v2 import notes  # noqa: E402 - after `bp` exists

bp.register_blueprint(notes.bp)
