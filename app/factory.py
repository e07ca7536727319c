"""The application factory: builds a Flask app from one `Settings`, no global state.

`create_app` reads as the request pipeline: before_request hooks run in the order they
are registered, so the order of the `init_app` calls below IS the pipeline order
(docs/architecture.md):

    1. request id + trace context        4. version lifecycle (headers, 410)
    2. identify the caller (no database) 5. per view: authorize -> validate -> handler
    3. rate limit (by caller, else IP)   6. envelope, headers, metrics
"""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app import custom
from app.ai import cli as ai_cli
from app.ai import extension as ai
from app.ai.compat import extension as ai_compat
from app.ai.jobs import tasks as ai_jobs
from app.api import cli as api_cli
from app.api import docs, health
from app.api.v1 import bp as v1_bp
from app.api.v2 import bp as v2_bp
from app.auth import cli as auth_cli
from app.auth import extension as auth
from app.auth import wellknown
from app.cache import extension as cache
from app.config_store import cli as config_cli
from app.config_store import extension as config_store
from app.core import db, redis, request_context, security
from app.core import health as readiness
from app.core import tasks as celery_ext
from app.core.errors.handlers import register_error_handlers
from app.core.flaskapp import ApiFlask
from app.core.observability import extension as observability
from app.core.observability.logging import configure_logging
from app.database import engine
from app.ratelimit import extension as ratelimit
from app.settings import Settings
from app.versioning import extension as versioning
from app.versioning import views as versions

API_VERSIONS: dict[int, str] = {1: "1.0", 2: "2.0"}


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app; `settings` defaults to the environment's."""
    settings = settings or Settings()
    configure_logging(settings)

    app = ApiFlask("app")
    app.config.update(
        SECRET_KEY=settings.secret(),
        JSON_SORT_KEYS=False,
        PROPAGATE_EXCEPTIONS=False,
        TRAP_HTTP_EXCEPTIONS=False,
    )
    if settings.trusted_proxies:
        # Only as many X-Forwarded-* hops as there are proxies we run; more is spoofable.
        n = settings.trusted_proxies
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=n, x_proto=n, x_host=n)  # type: ignore[method-assign]
    app.extensions["settings"] = settings
    app.extensions["api_versions"] = dict(API_VERSIONS)

    # -- the pipeline, in order ------------------------------------------------------------
    request_context.init_app(app)  # 1. request id, trace context
    security.init_app(app, settings)  # body size, CORS, security headers
    auth.init_app(app, settings)  # 2. identify
    ratelimit.init_app(app, settings)  # 3. rate limit
    cache.init_app(app, settings)  # not a hook: `@cached` views and `get_or_set` use it
    store = config_store.init_app(app, settings)  # no I/O: loads on first use per process
    versioning.init_app(app)  # 4. version lifecycle

    # -- what the stages and views use -----------------------------------------------------
    db.init_app(app, settings)
    redis.init_app(app, settings)
    celery = celery_ext.init_app(app, settings)
    auth.schedule_tasks(celery, settings)
    ai.init_app(app, settings)  # providers from the config store
    ai_jobs.schedule_tasks(celery, settings)
    checks = readiness.init_app(app, settings.readiness_timeout)
    checks.register("postgresql", lambda: engine.ping(app.extensions[db.EXTENSION]))
    checks.register("redis", lambda: app.extensions[redis.EXTENSION].ping())
    checks.register("config", store.check_ready)
    # 6. metrics: its hooks put themselves first and last whatever the order here
    observability.init_app(app, settings)

    # -- routes (5. authorize -> validate -> handler, per view) ------------------------------
    app.register_blueprint(health.bp)
    if settings.docs_enabled:
        app.register_blueprint(docs.bp)
    app.register_blueprint(v1_bp)
    app.register_blueprint(v2_bp)  # after v1: it carries v1's operations over
    app.register_blueprint(versions.bp)
    app.register_blueprint(wellknown.bp)
    ai_compat.init_app(app)  # /openai/v1 and /anthropic/v1 (their own shapes)
    custom.init_app(app)  # extensions register after /v2 (app/api/v2 names them)
    register_error_handlers(app)

    for cli in (api_cli, auth_cli, config_cli, ai_cli):
        cli.register_cli(app)
    return app


def settings_of(app: Flask) -> Settings:
    """The settings an app was built with."""
    s: Settings = app.extensions["settings"]
    return s
