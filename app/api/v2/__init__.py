"""Version 2 of the public API (`/v2/...`): every v1 operation, except what the table changes.

A client moves by changing its base URL from `/v1` to `/v2`: every v1 operation is
served here too (the same view function, so auth, scopes, rate limits, caching and
validation are the same code), except the ones the table below changes or removes.
The table is the one place that decides; `GET /versions/1.0/changes-to/2.0` derives
from the two OpenAPI documents and tests/versioning pins that it says exactly this.
Auth and admin are carried over too (a client keeps one base URL); see docs/versioning.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from flask import Blueprint, Response, current_app, g
from flask.sansio.blueprints import BlueprintSetupState
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import RequestRedirect

from app.api.v2 import notes
from app.api.v2.carry import Op, carry_over

VERSION: Final = "2.0"
PREFIX: Final = "/v2"
#: The version v2 succeeds; its blueprint (app/api/v1) is registered before this one.
SOURCE: Final = "v1"
SOURCE_PREFIX: Final = "/v1"

# ---- The v1 -> v2 decision table -------------------------------------------
#: v1 operations whose contract v2 changes: op -> what changed. Each is served by a view
#: of this package instead of the v1 one.
CHANGED: Final[Mapping[Op, str]] = {
    Op("GET", "/notes"): "cursor pagination: `cursor` and `next_cursor` replace `offset` "
    "and `count` (app/api/v2/notes.py)",
}
#: v1 operations v2 drops on purpose: op -> what a client uses instead. None so far.
REMOVED: Final[Mapping[Op, str]] = {}
#: Everything else is carried over unchanged: the core v1 blueprint (app/api/v1) below,
#: the notes example extension (registered after this blueprint) in app/api/v2/notes.py.
# ---------------------------------------------------------------------------------------

bp = Blueprint("v2", __name__, url_prefix=PREFIX)
#: `app.extensions` key: the core v1 operations an app serves under /v2 unchanged.
CARRIED_EXTENSION: Final = "api_v2_carried"


@bp.record
def _carry_v1(state: BlueprintSetupState) -> None:
    carried = carry_over(state, source=SOURCE, skip=CHANGED.keys() | REMOVED.keys())
    state.app.extensions[CARRIED_EXTENSION] = tuple(carried)


@bp.before_request
def _mark_version() -> None:
    g.api_version = VERSION


def _served(path: str) -> bool:
    """True if some method of `path` is routed here (a 405 still names a resource)."""
    try:
        current_app.url_map.bind("localhost").match(path, method="GET")
    except (MethodNotAllowed, RequestRedirect):
        return True
    except NotFound:
        return False
    return True


@bp.after_request
def _links_stay_in_v2(response: Response) -> Response:
    """A carried-over view names what it created under /v1: point a v2 client at /v2."""
    # The v1 views build `Location` with literal `/v1/...` prefixes (app/api/v1/*); a v2
    # client following one would land on the version it is leaving, possibly retired.
    location = response.headers.get("Location")
    if location and location.startswith(SOURCE_PREFIX + "/"):
        candidate = PREFIX + location[len(SOURCE_PREFIX) :]
        if _served(candidate):
            response.headers["Location"] = candidate
    return response


bp.register_blueprint(notes.bp)
