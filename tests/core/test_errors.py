"""Every failure class renders the envelope with the right status and code."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from pydantic import BaseModel
from redis.exceptions import ConnectionError as RedisConnectionError

from app.core.errors import (
    Conflict,
    DatabaseUnavailable,
    ErrorCode,
    Forbidden,
    RateLimited,
    Unauthorized,
)
from app.core.openapi import operation
from app.core.responses import ok
from app.core.warnings import WarningLevel, warn

SECRET_IN_EXCEPTION = "postgres://admin:hunter2@db/prod"


class Item(BaseModel):
    """A body with one required and one constrained field."""

    name: str
    quantity: int


def _raiser(exc: Exception) -> Callable[[], Any]:
    def view() -> Any:
        raise exc

    return view


@pytest.fixture
def error_app(app: Flask) -> Flask:
    """The test app plus routes that fail in each way a real view can."""
    routes: dict[str, Callable[[], Any]] = {
        "/t/401": _raiser(Unauthorized()),
        "/t/403": _raiser(Forbidden()),
        "/t/409": _raiser(Conflict("Owned by a custom resource.")),
        "/t/429": _raiser(RateLimited(retry_after=7)),
        "/t/503-db": _raiser(DatabaseUnavailable()),
        "/t/503-redis": _raiser(RedisConnectionError("redis://:pw@cache:6379")),
        "/t/500": _raiser(RuntimeError(SECRET_IN_EXCEPTION)),
    }
    for path, view in routes.items():
        app.add_url_rule(path, endpoint=path, view_func=view, methods=["GET"])

    @operation("Create an item", body=Item)
    def create_item(body: Item) -> Any:
        return ok(body)

    app.add_url_rule("/t/items", endpoint="items", view_func=create_item, methods=["POST"])

    def warned() -> Any:
        warn("EXAMPLE_NOTICE", "Something to know", WarningLevel.INFO, hint="x")
        warn("EXAMPLE_NOTICE", "Something to know", WarningLevel.INFO)  # deduplicated
        warn("EXAMPLE_DEPRECATED", "Going away")
        return ok({"done": True})

    app.add_url_rule("/t/warned", endpoint="warned", view_func=warned)
    return app


def _assert_error_envelope(response: Any, status: int, code: ErrorCode) -> dict[str, Any]:
    assert response.status_code == status
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"success", "message", "data", "error", "warnings", "meta"}
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == code.value
    assert set(body["error"]) == {"code", "errors", "required_fields", "details"}
    assert body["meta"]["request_id"] == response.headers["X-Request-ID"]
    assert isinstance(body["message"], str) and body["message"]
    return dict(body)


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code"),
    [
        (
            "POST",
            "/t/items",
            {"data": "{not json", "content_type": "application/json"},
            400,
            ErrorCode.VAL_MALFORMED_JSON,
        ),
        (
            "POST",
            "/t/items",
            {"data": b"\xff\xfe{}", "content_type": "application/json"},
            400,
            ErrorCode.VAL_MALFORMED_JSON,
        ),
        (
            "POST",
            "/t/items",
            {"data": "", "content_type": "application/json"},
            400,
            ErrorCode.VAL_MALFORMED_JSON,
        ),
        ("GET", "/t/401", {}, 401, ErrorCode.AUTH_REQUIRED),
        ("GET", "/t/403", {}, 403, ErrorCode.AUTH_FORBIDDEN),
        ("GET", "/does-not-exist", {}, 404, ErrorCode.RES_NOT_FOUND),
        ("DELETE", "/livez", {}, 405, ErrorCode.RES_METHOD_NOT_ALLOWED),
        ("GET", "/t/409", {}, 409, ErrorCode.RES_CONFLICT),
        (
            "POST",
            "/t/items",
            {"data": "name=x", "content_type": "text/plain"},
            415,
            ErrorCode.VAL_UNSUPPORTED_MEDIA_TYPE,
        ),
        ("POST", "/t/items", {"json": {"quantity": "many"}}, 422, ErrorCode.VAL_INVALID_FORMAT),
        ("GET", "/t/429", {}, 429, ErrorCode.RATE_LIMIT_EXCEEDED),
        ("GET", "/t/503-db", {}, 503, ErrorCode.DB_CONNECTION_ERROR),
        ("GET", "/t/503-redis", {}, 503, ErrorCode.SYS_CACHE_UNAVAILABLE),
        ("GET", "/t/500", {}, 500, ErrorCode.SYS_INTERNAL_ERROR),
    ],
)
def test_every_error_class_renders_the_envelope_with_its_code(
    error_app: Flask,
    method: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
    code: ErrorCode,
) -> None:
    response = error_app.test_client().open(path, method=method, **kwargs)
    _assert_error_envelope(response, status, code)


def test_body_larger_than_the_limit_is_refused_with_413(error_app: Flask) -> None:
    limit = error_app.config["MAX_CONTENT_LENGTH"]
    response = error_app.test_client().post(
        "/t/items", data=b"x" * (limit + 1), content_type="application/json"
    )
    body = _assert_error_envelope(response, 413, ErrorCode.VAL_PAYLOAD_TOO_LARGE)
    assert body["error"]["details"]["max_bytes"] == limit


def test_oversized_body_is_refused_even_where_the_view_ignores_bodies(client: FlaskClient) -> None:
    limit = client.application.config["MAX_CONTENT_LENGTH"]
    response = client.get("/livez", data=b"x" * (limit + 1))
    _assert_error_envelope(response, 413, ErrorCode.VAL_PAYLOAD_TOO_LARGE)


def test_validation_error_lists_fields_and_required_fields(error_app: Flask) -> None:
    response = error_app.test_client().post("/t/items", json={"quantity": "many"})
    body = _assert_error_envelope(response, 422, ErrorCode.VAL_INVALID_FORMAT)
    fields = {e["field"]: e for e in body["error"]["errors"]}
    assert fields["name"]["type"] == "missing"
    assert fields["quantity"]["type"] == "int_parsing"
    assert body["error"]["required_fields"] == ["name"]


def test_a_json_array_is_a_validation_error_not_a_crash(error_app: Flask) -> None:
    response = error_app.test_client().post("/t/items", json=[1, 2])
    _assert_error_envelope(response, 422, ErrorCode.VAL_INVALID_FORMAT)


def test_deeply_nested_json_is_refused_cleanly(error_app: Flask) -> None:
    deep = "[" * 100_000 + "]" * 100_000
    response = error_app.test_client().post("/t/items", data=deep, content_type="application/json")
    assert response.status_code in (400, 413)
    assert response.get_json()["error"]["code"] in {"VAL_MALFORMED_JSON", "VAL_PAYLOAD_TOO_LARGE"}


def test_405_names_the_allowed_methods(client: FlaskClient) -> None:
    response = client.delete("/livez")
    assert set(response.headers["Allow"].split(", ")) >= {"GET"}
    assert "GET" in response.get_json()["error"]["details"]["allowed_methods"]


def test_429_carries_retry_after(error_app: Flask) -> None:
    response = error_app.test_client().get("/t/429")
    assert response.headers["Retry-After"] == "7"


def test_401_carries_a_bearer_challenge(error_app: Flask) -> None:
    response = error_app.test_client().get("/t/401")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_unknown_exception_hides_internals_but_logs_them(
    error_app: Flask, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = error_app.test_client().get("/t/500")
    body = _assert_error_envelope(response, 500, ErrorCode.SYS_INTERNAL_ERROR)
    raw = response.get_data(as_text=True)
    assert "hunter2" not in raw and "RuntimeError" not in raw and "Traceback" not in raw
    assert body["error"]["details"] == {"request_id": response.headers["X-Request-ID"]}
    assert any(r.exc_info and r.levelno == logging.ERROR for r in caplog.records)


def test_dependency_errors_do_not_echo_connection_strings(error_app: Flask) -> None:
    response = error_app.test_client().get("/t/503-redis")
    assert ":pw@" not in response.get_data(as_text=True)
    assert response.headers["Retry-After"] == "1"


def test_warnings_are_collected_deduplicated_and_returned(error_app: Flask) -> None:
    body = error_app.test_client().get("/t/warned").get_json()
    assert body["success"] is True
    assert body["warnings"] == [
        {
            "code": "EXAMPLE_NOTICE",
            "message": "Something to know",
            "level": "INFO",
            "context": {"hint": "x"},
        },
        {"code": "EXAMPLE_DEPRECATED", "message": "Going away", "level": "WARN"},
    ]


def test_every_catalogue_code_has_a_status_and_description() -> None:
    prefixes = {"AUTH", "VAL", "RES", "VERSION", "RATE", "AI", "DB", "SYS"}
    for code in ErrorCode:
        assert code.value.split("_", 1)[0] in prefixes
        assert 400 <= code.status < 600
        assert code.description.endswith(".")


def test_docs_error_catalogue_matches_the_enum() -> None:
    from pathlib import Path

    from app.core.errors.codes import catalogue_markdown

    path = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
    assert path.read_text(encoding="utf-8") == catalogue_markdown(), "run `make docs`"


def test_a_statement_timeout_is_a_503_db_timeout_not_a_500(app: Flask) -> None:
    from sqlalchemy import text

    from app.core.db import get_session

    def slow() -> Any:
        session = get_session()
        session.execute(text("SET LOCAL statement_timeout = '50ms'"))
        session.execute(text("SELECT pg_sleep(2)"))
        return ok({})

    app.add_url_rule("/t/slow", endpoint="slow", view_func=slow)
    response = app.test_client().get("/t/slow")
    _assert_error_envelope(response, 503, ErrorCode.DB_TIMEOUT)
    assert response.headers["Retry-After"] == "1"
