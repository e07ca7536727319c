"""Security headers for a JSON API, and CORS only when origins are configured."""

from __future__ import annotations

from flask.testing import FlaskClient

from app.factory import create_app
from app.settings import Settings


def test_json_responses_carry_the_security_headers(client: FlaskClient) -> None:
    headers = client.get("/livez").headers
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["Referrer-Policy"] == "no-referrer"


def test_auth_responses_are_never_stored(client: FlaskClient) -> None:
    response = client.post("/v1/auth/login", json={})
    assert response.headers["Cache-Control"] == "no-store"


def test_cors_is_off_unless_origins_are_configured(client: FlaskClient) -> None:
    response = client.get("/livez", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in response.headers


def test_cors_allows_only_configured_origins(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"cors_origins": ["https://app.example"]}))
    client = app.test_client()
    good = client.options(
        "/livez",
        headers={"Origin": "https://app.example", "Access-Control-Request-Method": "GET"},
    )
    assert good.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert "X-Request-ID" in good.headers["Access-Control-Expose-Headers"]
    assert "GET" in good.headers["Access-Control-Allow-Methods"]
    bad = client.get("/livez", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers
    assert "Origin" in bad.headers["Vary"]


def test_docs_page_may_load_its_own_scripts_only(client: FlaskClient) -> None:
    csp = client.get("/docs").headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "http" not in csp


def test_forwarded_headers_are_ignored_unless_proxies_are_trusted(settings: Settings) -> None:
    def remote_addr(app_settings: Settings) -> str:
        app = create_app(app_settings)

        @app.get("/t/ip")
        def ip() -> dict[str, str]:
            from flask import request

            return {"ip": request.remote_addr or ""}

        headers = {"X-Forwarded-For": "203.0.113.9"}
        return str(app.test_client().get("/t/ip", headers=headers).get_json()["ip"])

    assert remote_addr(settings) == "127.0.0.1"
    assert remote_addr(settings.model_copy(update={"trusted_proxies": 1})) == "203.0.113.9"


def test_a_declared_body_over_the_limit_is_refused_before_any_view(
    client: FlaskClient, settings: Settings
) -> None:
    too_big = b"x" * (settings.max_content_length + 1)

    refused = client.get("/livez", data=too_big, content_type="text/plain")
    at_limit = client.get("/livez", data=too_big[:-1], content_type="text/plain")

    assert refused.status_code == 413
    assert refused.get_json()["error"]["code"] == "VAL_PAYLOAD_TOO_LARGE"
    assert at_limit.status_code == 200
