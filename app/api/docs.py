"""OpenAPI documents per version and an offline interactive docs page.

Swagger UI's assets come from the `swagger-ui-bundle-v2` wheel and are served by the
app itself, so `/docs` works on a cluster with no internet access.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import swagger_ui_bundle
from flask import Blueprint, Response, current_app, send_from_directory, url_for

from app.core.errors import NotFound
from app.core.openapi import build_spec
from app.core.responses import dumps

bp = Blueprint("docs", __name__)

COMMON_PATHS: Final = ("/livez", "/readyz", "/versions")
ASSETS: Final = frozenset(
    {
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
)
STATIC_DIR: Final = Path(__file__).resolve().parent.parent / "static"


def api_versions() -> dict[int, str]:
    """Major number -> `MAJOR.MINOR` of every API version the code serves."""
    versions: dict[int, str] = current_app.extensions["api_versions"]
    return versions


def _openapi_text(major: int) -> str:
    versions = api_versions()
    if major not in versions:
        raise NotFound(f"No API version v{major}.")
    # Routes are fixed once the app is built, so each document is rendered once.
    cached: dict[int, str] = current_app.extensions.setdefault("openapi_cache", {})
    if major not in cached:
        spec = build_spec(
            current_app,
            version=versions[major],
            path_prefixes=(f"/v{major}/", *COMMON_PATHS),
            title=f"Structured API v{major}",
            description=(
                "Every response uses the envelope `{success, message, data, error, warnings, "
                "meta}`; errors carry a code from the `ErrorCode` catalogue."
            ),
        )
        cached[major] = dumps(spec)
    return cached[major]


def openapi_document(major: int) -> dict[str, Any]:
    """The OpenAPI document of one major version as a dict (for tests and tools)."""
    loaded: dict[str, Any] = json.loads(_openapi_text(major))
    return loaded


@bp.get("/v<int:major>/openapi.json")
def openapi_json(major: int) -> Response:
    """The raw OpenAPI 3.1 document (not enveloped: tools consume it as is)."""
    return current_app.response_class(_openapi_text(major), mimetype="application/json")


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
