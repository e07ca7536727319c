"""HEAD runs the GET view: it shares the GET's cache entry and its authorization."""

from __future__ import annotations

from flask import Flask

PUBLIC = "/v1/cache-probe/public"


def test_head_and_get_share_one_cache_entry(cache_app: Flask) -> None:
    client = cache_app.test_client()

    head = client.head(PUBLIC)
    get = client.get(PUBLIC)

    assert head.status_code == 200 and head.data == b""
    assert (head.headers["X-Cache"], get.headers["X-Cache"]) == ("MISS", "HIT")
    assert get.get_json()["data"] == {"n": 1}  # computed once, by the HEAD
    assert head.headers["ETag"] == get.headers["ETag"]
    assert client.head(PUBLIC, headers={"If-None-Match": get.headers["ETag"]}).status_code == 304


def test_a_protected_get_refuses_an_anonymous_head(app: Flask) -> None:
    assert app.test_client().head("/v1/auth/me").status_code == 401
