"""Hostile requests get their documented 4xx envelope, on every kind of route with a body.

Oversized bodies (413 VAL_PAYLOAD_TOO_LARGE), JSON nested past any sane depth (400
VAL_MALFORMED_JSON, or 422 where it parses but is not the model), wrong content types
(415 VAL_UNSUPPORTED_MEDIA_TYPE), invalid UTF-8 (400 VAL_MALFORMED_JSON). Huge headers
are refused by gunicorn itself before the app sees them: tests/fuzz/test_huge_headers.py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

pytestmark = [pytest.mark.fuzz]

#: (method, path, role): a user's write (the notes example), its v2 twin, a public auth
#: route, an authenticated AI route and an admin config route that stores free-form JSON.
ROUTES = [
    ("POST", "/v1/notes", "user"),
    ("POST", "/v2/notes", "user"),
    ("POST", "/v1/auth/register", "anonymous"),
    ("POST", "/v1/ai/generate", "user"),
    ("PUT", "/v1/admin/rate-limit-policies/hostile", "admin"),
]
ROUTE_IDS = [f"{method} {path}" for method, path, _ in ROUTES]


def send(
    client: FlaskClient, headers_for: Callable[[str], dict[str, str]], route: tuple[str, str, str],
    data: bytes, content_type: str | None = "application/json",
) -> Any:  # fmt: skip
    """Send raw bytes to `route` as its role."""
    method, path, role = route
    headers = dict(headers_for(role))
    if content_type is not None:
        headers["Content-Type"] = content_type
    return client.open(path, method=method, data=data, headers=headers)


def assert_error(response: Any, status: int, code: str) -> None:
    """The documented envelope: success false, the code, a request id."""
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    body = response.get_json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["meta"]["request_id"]


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_body_over_the_limit_is_refused_with_413(
    route: tuple[str, str, str], client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    limit = client.application.extensions["settings"].max_content_length
    body = b'{"title": "' + b"x" * (limit + 1) + b'"}'
    assert_error(send(client, headers_for, route, body), 413, "VAL_PAYLOAD_TOO_LARGE")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("depth", [10_000, 400_000])
def test_json_nested_past_the_parser_limit_is_refused_with_400(
    route: tuple[str, str, str], depth: int, client: FlaskClient,
    headers_for: Callable[[str], dict[str, str]],
) -> None:  # fmt: skip
    body = b"[" * depth + b"]" * depth
    assert_error(send(client, headers_for, route, body), 400, "VAL_MALFORMED_JSON")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize("depth", [100, 900])
def test_deep_json_that_parses_is_refused_with_422_not_stored(
    route: tuple[str, str, str], depth: int, client: FlaskClient,
    headers_for: Callable[[str], dict[str, str]],
) -> None:  # fmt: skip
    nested = b'{"a": ' * depth + b"1" + b"}" * depth
    body = b'{"title": ' + nested + b', "prompt": ' + nested + b', "spec": ' + nested + b"}"
    assert_error(send(client, headers_for, route, body), 422, "VAL_INVALID_FORMAT")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    ("content_type", "data"),
    [
        ("text/plain", b'{"title": "x"}'),
        ("application/x-www-form-urlencoded", b"title=x"),
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="t"\r\n\r\nx\r\n--b--\r\n',
        ),
        ("application/xml", b"<title>x</title>"),
        (None, b'{"title": "x"}'),
    ],
    ids=["text", "form", "multipart", "xml", "none"],
)
def test_a_body_that_is_not_json_is_refused_with_415(
    route: tuple[str, str, str], content_type: str | None, data: bytes, client: FlaskClient,
    headers_for: Callable[[str], dict[str, str]],
) -> None:  # fmt: skip
    response = send(client, headers_for, route, data, content_type)
    assert_error(response, 415, "VAL_UNSUPPORTED_MEDIA_TYPE")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
@pytest.mark.parametrize(
    "data",
    [b'{"title": "\xff\xfe"}', b'{"title": "\xc3\x28"}', b'{"title": "\xed\xa0\x80"}', b"\x00"],
    ids=["ff-fe", "bad-continuation", "surrogate", "nul"],
)
def test_a_body_that_is_not_utf8_json_is_refused_with_400(
    route: tuple[str, str, str], data: bytes, client: FlaskClient,
    headers_for: Callable[[str], dict[str, str]],
) -> None:  # fmt: skip
    assert_error(send(client, headers_for, route, data), 400, "VAL_MALFORMED_JSON")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_json_that_is_not_an_object_is_refused_with_422(
    route: tuple[str, str, str], client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    for body in (b"[]", b'"title"', b"null", b"1e999"):
        assert_error(send(client, headers_for, route, body), 422, "VAL_INVALID_FORMAT")


@pytest.mark.parametrize("route", ROUTES, ids=ROUTE_IDS)
def test_a_nul_character_anywhere_in_the_body_is_refused_with_422(
    route: tuple[str, str, str], client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    body = b'{"title": "a\\u0000", "prompt": "p\\u0000", "email": "e\\u0000@example.com"}'
    response = send(client, headers_for, route, body)
    assert_error(response, 422, "VAL_INVALID_FORMAT")
    assert {e["type"] for e in response.get_json()["error"]["errors"]} == {"string_nul"}
