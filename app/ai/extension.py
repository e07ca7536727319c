"""AI gateway: providers from the config store, retries, breakers, fallback, streaming.

    ai.init_app(app, settings)        # in the factory, after the config store
    gateway().resolve_model(None)     # -> (model, candidates)
    gateway().complete(request, candidates) / gateway().open_stream(request, candidates)

Token budgets, history and the HTTP surface live in app/ai/generate.py and
app/ai/views.py; see docs/ai.md.
"""

from __future__ import annotations

from typing import Final

from flask import Flask, current_app

from app.ai.gateway import Gateway
from app.ai.history import tasks as history_tasks
from app.config_store.extension import config_store
from app.settings import Settings

EXTENSION: Final = "ai_gateway"


def init_app(app: Flask, settings: Settings) -> Gateway:
    """Create the gateway (no I/O: providers are built on first use per generation)."""
    store = config_store(app)
    gw = Gateway(settings, store.current)
    limiter = app.extensions.get("ratelimit")
    if limiter is not None:
        gw.limits_store = limiter.store
        gw.slots_beside_journal = (
            not settings.redis_cluster_nodes and settings.limiter_redis_url() == settings.redis_url
        )
    app.extensions[EXTENSION] = gw
    celery_app = app.extensions.get("celery")
    if celery_app is not None:
        history_tasks.schedule(celery_app, settings)
    return gw


def gateway(app: Flask | None = None) -> Gateway:
    """The gateway of `app` (default: the current app)."""
    gw: Gateway = (app or current_app).extensions[EXTENSION]
    return gw
