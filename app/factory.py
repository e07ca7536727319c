"""The application factory: builds a Flask app from one `Settings`, no global state."""

from __future__ import annotations

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.api import docs, health, wellknown
from app.api.v1 import bp as v1_bp
from app.config import Settings
from app.core import auth, db, redis, request_context, security
from app.core import health as readiness
from app.core import tasks as celery_ext
from app.core.errors.handlers import register_error_handlers
from app.core.flaskapp import ApiFlask
from app.core.observability.logging import configure_logging

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

    # The request pipeline (DESIGN.md section 4). before_request hooks run in the
    # order they are registered here, so this block IS the pipeline order:
    #   1. request id (+ trace context)      3. rate limit (keyed by caller, else IP)
    #   2. identify caller (no DB)           4. version lifecycle (headers, 410)
    # then per view: authorize (roles) -> validate (@operation) -> handler.
    request_context.init_app(app)
    security.init_app(app, settings)
    # [pipeline:identify]
    auth.init_app(app, settings)
    # [pipeline:ratelimit]
    from app.core import ratelimit

    ratelimit.init_app(app, settings)
    from app.core import cache

    cache.init_app(app, settings)  # not a hook: `@cached` views and `get_or_set` use it
    # [pipeline:versioning]
    from app.core import config_store, versioning

    store = config_store.init_app(app, settings)  # no I/O: loads on first use per process
    versioning.init_app(app)

    db.init_app(app, settings)
    redis.init_app(app, settings)
    celery_ext.init_app(app, settings)
    auth.schedule_tasks(app.extensions[celery_ext.EXTENSION], settings)
    # AI gateway and jobs (issue 5): providers from the config store, job tasks + beat.
    from app.core import ai
    from app.core.tasks import ai as ai_tasks

    ai.init_app(app, settings)
    ai_tasks.schedule_tasks(app.extensions[celery_ext.EXTENSION], settings)
    checks = readiness.init_app(app, settings.readiness_timeout)
    checks.register("postgresql", lambda: db.ping(app.extensions[db.EXTENSION]))
    checks.register("redis", lambda: app.extensions[redis.EXTENSION].ping())
    checks.register("config", store.check_ready)
    # Metrics hooks (first/last in the pipeline), /metrics, tracing (issue 7).
    from app.core import observability

    observability.init_app(app, settings)

    app.register_blueprint(health.bp)
    if settings.docs_enabled:
        app.register_blueprint(docs.bp)
    app.register_blueprint(v1_bp)
    from app.api import versions
    from app.api.v2 import bp as v2_bp

    app.register_blueprint(v2_bp)
    app.register_blueprint(versions.bp)
    app.register_blueprint(wellknown.bp)

    from app import custom

    custom.init_app(app)

    register_error_handlers(app)
    from app.cli import register_cli

    register_cli(app)
    from app.cli_users import register_auth_cli

    register_auth_cli(app)
    from app.cli_ai import register_ai_cli

    register_ai_cli(app)
    return app


def settings_of(app: Flask) -> Settings:
    """The settings an app was built with."""
    s: Settings = app.extensions["settings"]
    return s
