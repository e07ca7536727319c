"""OpenAPI documents per version and an offline interactive docs page.

Swagger UI's assets come from the `swagger-ui-bundle-v2` wheel and are served by the
app itself, so `/docs` works on a cluster with no internet access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, send_from_directory, url_for

from app.core.encoding import dumps
from app.core.errors import NotFound
from app.core.openapi import api_versions, openapi_text

bp = Blueprint("docs", __name__)

ASSETS: Final = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
)
STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"


@bp.get("/v<int:major>/openapi.json")
def openapi_json(major: int) -> Response:
    """The raw OpenAPI 3.1 document (not enveloped: tools consume it as is)."""
    return current_app.response_class(openapi_text(major), mimetype="application/json")


@bp.get("/docs")
def docs_page() -> Response:
    """The interactive docs page (Swagger UI), one entry per API version."""
    html = (STATIC_DIR / "docs.html").read_text(encoding="utf-8")
    html = html.replace("{{ASSETS}}", url_for("docs.docs_asset", name="")[:-1])
    html = html.replace("{{INIT}}", url_for("docs.docs_init"))
    return current_app.response_class(html, mimetype="text/html")


@bp.get("/docs/init.js")
def docs_init() -> Response:
    """Swagger UI bootstrap listing every version's document (external script for CSP)."""
    urls = [
        {"url": url_for("docs.openapi_json", major=m), "name": f"v{m} ({v})"}
        for m, v in sorted(api_versions().items(), reverse=True)
    ]
    script = (STATIC_DIR / "docs-init.js").read_text(encoding="utf-8")
    return current_app.response_class(
        script.replace("__URLS__", dumps(urls)), mimetype="text/javascript"
    )


@bp.get("/docs/assets/<name>")
def docs_asset(name: str) -> Response:
    """A Swagger UI asset shipped inside the wheel."""
    if name not in ASSETS:
        raise NotFound()
    response = send_from_directory(
        Path(str(swagger_ui_bundle.swagger_ui_path)), name, max_age=86400
    )
    return response
