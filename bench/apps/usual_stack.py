"""The stack a Flask user would assemble instead (docs/performance.md).

* Flask-Limiter on Redis, moving-window strategy (exact, like ours), headers on,
  keyed by client address (its documented default);
* Flask-JWT-Extended, `@jwt_required()` with its default HS256;
* prometheus-flask-exporter in gunicorn multiprocess mode (as our app);
* OpenTelemetry Flask instrumentation; `OTEL_TRACES_SAMPLER(_ARG)` choose the sampler
  (OTel's default is parentbased_always_on). Spans are recorded but not exported, the
  same as our app's run, so neither side pays for an exporter;
* Flask-SQLAlchemy (its defaults: a QueuePool of 5 + 10, no pre-ping, a session per
  request with `expire_on_commit`) on the same PostgreSQL and the same `custom_notes`
  table as our notes example, for the peers of our DB-backed rows: `GET /notes/<id>`
  (the caller's note by primary key and owner, 404 otherwise) and `POST /notes` (insert,
  commit, 201 with the note), written as that library's documentation writes them.

Environment: REDIS_URL, BENCH_JWT_SECRET, PROMETHEUS_MULTIPROC_DIR, DATABASE_URL.
"""

import os
import uuid
from datetime import UTC, datetime

from flask import Flask, abort, jsonify, request
from flask_jwt_extended import JWTManager, get_jwt_identity, jwt_required
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_sqlalchemy import SQLAlchemy
from opentelemetry import trace
from opentelemetry.instrumentation.flask import FlaskInstrumentor
from opentelemetry.sdk.trace import TracerProvider
from prometheus_flask_exporter.multiprocess import GunicornPrometheusMetrics
from sqlalchemy import DateTime, String, Text, Uuid
from sqlalchemy.orm import Mapped, mapped_column

application = Flask(__name__)
application.config["JWT_SECRET_KEY"] = os.environ["BENCH_JWT_SECRET"]
application.config["SQLALCHEMY_DATABASE_URI"] = os.environ.get("DATABASE_URL", "sqlite://")
db = SQLAlchemy(application)
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


def _now() -> datetime:
    return datetime.now(UTC)


class Note(db.Model):  # type: ignore[name-defined,misc]
    """The table our notes example migrates (app/custom/notes/models.py)."""

    __tablename__ = "custom_notes"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    owner_id: Mapped[uuid.UUID] = mapped_column(Uuid)  # the FK to users is in the schema
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=_now)

    def to_dict(self) -> dict[str, object]:
        """The same fields our API returns for a note."""
        return {
            "id": str(self.id), "title": self.title, "body": self.body,
            "created_at": self.created_at.isoformat(), "updated_at": self.updated_at.isoformat(),
        }  # fmt: skip


@application.get("/notes/<uuid:note_id>")
@jwt_required()
@limiter.limit("100000000 per minute")
def get_note(note_id: uuid.UUID):  # type: ignore[no-untyped-def]
    """One of the caller's notes by primary key; someone else's is 404."""
    note = db.session.get(Note, note_id)
    if note is None or str(note.owner_id) != get_jwt_identity():
        abort(404)
    return jsonify(note.to_dict())


@application.post("/notes")
@jwt_required()
@limiter.limit("100000000 per minute")
def create_note():  # type: ignore[no-untyped-def]
    """Insert a note owned by the caller; 201 with it."""
    data = request.get_json()
    title, body = data.get("title"), data.get("body", "")
    if not isinstance(title, str) or not 1 <= len(title) <= 200 or not isinstance(body, str):
        abort(422)
    note = Note(title=title, body=body, owner_id=uuid.UUID(get_jwt_identity()))
    db.session.add(note)
    db.session.commit()
    return jsonify(note.to_dict()), 201
