"""Mount the compatible surfaces: `/openai/v1` and `/anthropic/v1`, errors in their shapes.

compat.init_app(app)     # in the factory, with the other routes
"""

from __future__ import annotations

from flask import Flask

from app.ai.compat import anthropic_views, openai_views
from app.ai.compat.errors import reshape


def init_app(app: Flask) -> None:
    """Register both blueprints and the error reshaping hook."""
    app.register_blueprint(openai_views.bp)
    app.register_blueprint(anthropic_views.bp)
    app.after_request(reshape)
