"""The app `bench/run.py` serves for every "ours" scenario: the real `create_app()` plus
the `/v1/bench/ping` route of `structured.py` and one cached read.

`GET /v1/bench/notes/<id>` is `GET /v1/notes/<id>` (same service, same model) behind
`require_auth` and `@cached` (docs/caching.md), so the cached rows of the table compare
directly with the DB-backed one: a hit skips PostgreSQL, a `304` also skips the body.
Environment as a deployment: DATABASE_URL, REDIS_URL, SECRET_KEY, ...
"""

import uuid

from flask import Blueprint, Response

from app.auth.decorators import require_auth
from app.cache.http import cached
from app.core.db import get_session
from app.core.openapi import operation
from app.core.responses import ok
from app.custom.notes import services
from app.custom.notes.models import NotePublic
from app.custom.notes.views import owner
from bench.apps.structured import application

bp = Blueprint("bench_cached", __name__, url_prefix="/v1/bench")


@bp.get("/notes/<uuid:note_id>")
@require_auth(scopes=["profile:read"])
@cached(ttl=3600, tags=["note:{note_id}"])
@operation("Benchmark cached note", tags=["bench"], response=NotePublic, auth=True)
def cached_note(note_id: uuid.UUID) -> Response:
    """One note, served from the response cache after the first read."""
    note = services.get_note(session=get_session(), owner_id=owner(), note_id=note_id)
    return ok(NotePublic.model_validate(note, from_attributes=True))


application.register_blueprint(bp)
