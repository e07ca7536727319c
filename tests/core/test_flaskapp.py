"""`ApiResponse` hands the server the headers werkzeug's own `Response` would."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask import Response
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

from app.core.flaskapp import ApiResponse, append_headers

ENVIRON = EnvironBuilder(path="/v1/notes", base_url="http://api.example").get_environ()


def _stream() -> Any:
    yield b"chunk"


CASES: dict[str, Callable[[type[Response]], Response]] = {
    "json answer": lambda cls: cls(b"{}", content_type="application/json"),
    "201 with a plain Location": lambda cls: cls(b"{}", status=201, headers={"Location": "/v1/x"}),
    "Location with non-ASCII": lambda cls: cls(b"{}", status=201, headers={"Location": "/n/é"}),
    "Content-Location with a space": lambda cls: cls(b"{}", headers={"Content-Location": "/a b"}),
    "Location twice": lambda cls: cls(
        b"{}", status=201, headers=[("Location", "/a"), ("Location", "/b")]
    ),
    "204": lambda cls: cls(status=204),
    "304 with entity headers": lambda cls: cls(
        b"{}", status=304, headers={"Content-Language": "en", "ETag": '"x"'}
    ),
    "101": lambda cls: cls(status=101),
    "streamed body, no length": lambda cls: cls(_stream(), content_type="text/plain"),
}


@pytest.mark.parametrize("case", CASES)
def test_wsgi_headers_are_the_ones_werkzeug_sends(case: str) -> None:
    ours, theirs = CASES[case](ApiResponse), CASES[case](Response)

    assert ours.get_wsgi_response(ENVIRON)[1:] == theirs.get_wsgi_response(ENVIRON)[1:]


def test_wsgi_headers_are_a_copy() -> None:
    response = ApiResponse(b"{}")

    response.get_wsgi_headers(ENVIRON).add("X-Later", "1")

    assert "X-Later" not in response.headers


def test_appended_headers_refuse_newlines_as_werkzeug_does() -> None:
    headers = Headers([("Content-Type", "application/json")])

    with pytest.raises(ValueError, match="newline"):
        append_headers(headers, [("X-Ok", "fine"), ("X-Split", "a\r\nSet-Cookie: b=c")])
    append_headers(headers, [("X-Ok", "fine")])

    assert headers.to_wsgi_list() == [("Content-Type", "application/json"), ("X-Ok", "fine")]
