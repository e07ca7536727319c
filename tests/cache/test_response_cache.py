"""`@cached` GET views: hits, ETag/304, what keys vary on, invalidation, failures."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from prometheus_client import REGISTRY

from app.cache.service import cache_of
from app.cache.store import CacheStore
from app.ratelimit.store import build_client
from tests.support.processes import free_port

ITEMS = "/v1/cache-probe/items"


def test_a_second_get_is_served_from_the_cache_with_the_same_etag(
    cache_app: Flask, count: Callable[[str], int], bearer: Callable[[str], dict[str, str]]
) -> None:
    client, alice = cache_app.test_client(), bearer("alice")
    first = client.get(ITEMS, headers=alice)
    second = client.get(ITEMS, headers=alice)
    assert (first.status_code, second.status_code) == (200, 200)
    assert (first.headers["X-Cache"], second.headers["X-Cache"]) == ("MISS", "HIT")
    assert first.json["data"] == second.json["data"] == {"n": 1, "args": []}
    assert count("items") == 1
    assert first.headers["ETag"] == second.headers["ETag"]
    assert first.headers["ETag"].startswith('"') and len(first.headers["ETag"]) == 34
    assert second.headers["Cache-Control"] == "private, max-age=0, must-revalidate"
    assert second.headers["Vary"] == "Authorization, X-API-Key"
    # The envelope around the cached data is this request's own.
    assert first.json["meta"]["request_id"] != second.json["meta"]["request_id"]
    assert second.json["meta"]["api_version"] == "1.0"


@pytest.mark.parametrize(
    ("if_none_match", "status"),
    [
        ("{etag}", 304),
        ("W/{etag}", 304),  # If-None-Match uses the weak comparison (RFC 9110 13.1.2)
        ('"other", {etag}', 304),
        ("*", 304),
        ('"other"', 200),
    ],
)
def test_if_none_match_with_the_current_etag_gives_304_without_a_body(
    cache_app: Flask, if_none_match: str, status: int
) -> None:
    client = cache_app.test_client()
    etag = client.get(ITEMS).headers["ETag"]
    response = client.get(ITEMS, headers={"If-None-Match": if_none_match.format(etag=etag)})
    assert response.status_code == status
    assert response.headers["ETag"] == etag
    if status == 304:
        assert response.data == b""
        assert response.headers["Cache-Control"] == "private, max-age=0, must-revalidate"


def test_each_caller_has_its_own_entries(
    cache_app: Flask, count: Callable[[str], int], bearer: Callable[[str], dict[str, str]]
) -> None:
    client = cache_app.test_client()
    alice, bob = bearer("alice"), bearer("bob")
    ns = [client.get(ITEMS, headers=h).json["data"]["n"] for h in (alice, bob, {}, alice, bob, {})]
    assert ns == [1, 2, 3, 1, 2, 3]
    assert count("items") == 3


def test_the_query_string_is_normalised_into_the_key(
    cache_app: Flask, count: Callable[[str], int]
) -> None:
    client = cache_app.test_client()
    a = client.get(ITEMS + "?b=2&a=1&a=0").json["data"]
    b = client.get(ITEMS + "?a=0&a=1&b=2").json["data"]
    c = client.get(ITEMS + "?a=1&b=3").json["data"]
    assert a == b and a["n"] == 1
    assert c["n"] == 2
    assert count("items") == 2


def test_each_api_version_has_its_own_entries(
    cache_app: Flask, count: Callable[[str], int]
) -> None:
    client = cache_app.test_client()
    v1 = client.get("/v1/cache-probe/items")
    v2 = client.get("/v2/cache-probe/items")
    assert (v1.json["data"]["n"], v2.json["data"]["n"]) == (1, 2)
    assert v2.json["meta"]["api_version"] == "2.0"
    assert client.get("/v2/cache-probe/items").headers["X-Cache"] == "HIT"


def test_a_successful_write_invalidates_the_writers_entries_only(
    cache_app: Flask, count: Callable[[str], int], bearer: Callable[[str], dict[str, str]]
) -> None:
    client, alice, bob = cache_app.test_client(), bearer("alice"), bearer("bob")
    assert client.get(ITEMS, headers=alice).json["data"]["n"] == 1
    assert client.get(ITEMS, headers=bob).json["data"]["n"] == 2
    before = REGISTRY.get_sample_value("sapi_cache_invalidations_total", {"cache": "add_item"})
    assert client.post(ITEMS, headers=alice).status_code == 201
    after = REGISTRY.get_sample_value("sapi_cache_invalidations_total", {"cache": "add_item"})
    assert (after or 0) - (before or 0) == 1
    fresh = client.get(ITEMS, headers=alice)
    assert (fresh.headers["X-Cache"], fresh.json["data"]["n"]) == ("MISS", 3)
    assert client.get(ITEMS, headers=bob).json["data"]["n"] == 2  # untouched


def test_a_public_view_is_shared_by_every_caller_and_may_be_kept_by_clients(
    cache_app: Flask, count: Callable[[str], int], bearer: Callable[[str], dict[str, str]]
) -> None:
    client = cache_app.test_client()
    for headers in ({}, bearer("alice"), bearer("bob")):
        response = client.get("/v1/cache-probe/public", headers=headers)
        assert response.json["data"] == {"n": 1}
    assert response.headers["Cache-Control"] == "public, max-age=60"
    assert "Vary" not in response.headers


def test_errors_are_never_cached(cache_app: Flask, count: Callable[[str], int]) -> None:
    client = cache_app.test_client()
    for _ in range(3):
        response = client.get("/v1/cache-probe/missing")
        assert response.status_code == 404
        assert response.json["error"]["code"] == "RES_NOT_FOUND"
        assert "ETag" not in response.headers
    assert count("missing") == 3


def test_warnings_the_view_added_are_replayed_on_a_hit(
    cache_app: Flask, count: Callable[[str], int]
) -> None:
    client = cache_app.test_client()
    first, second = client.get("/v1/cache-probe/warned"), client.get("/v1/cache-probe/warned")
    assert second.headers["X-Cache"] == "HIT"
    assert second.json["warnings"] == first.json["warnings"]
    assert second.json["warnings"][0]["code"] == "PARTIAL_RESULT"
    assert second.json["message"] == "partial"
    assert count("warned") == 1


def test_an_unreachable_redis_serves_every_request_uncached(
    cache_app: Flask, count: Callable[[str], int]
) -> None:
    dead = build_client(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)
    cache_of(cache_app).store = CacheStore(dead)
    client = cache_app.test_client()
    responses = [client.get(ITEMS) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert [r.json["data"]["n"] for r in responses] == [1, 2, 3]
    assert all(r.json["warnings"] == [] for r in responses)
    assert REGISTRY.get_sample_value(
        "sapi_cache_requests_total", {"cache": "items", "result": "error"}
    )


def test_hits_misses_and_304s_are_counted_per_cache(cache_app: Flask) -> None:
    def sample(result: str) -> float:
        labels = {"cache": "public", "result": result}
        return REGISTRY.get_sample_value("sapi_cache_requests_total", labels) or 0.0

    before = {r: sample(r) for r in ("hit", "miss", "not_modified")}
    client = cache_app.test_client()
    etag = client.get("/v1/cache-probe/public").headers["ETag"]
    client.get("/v1/cache-probe/public")
    client.get("/v1/cache-probe/public", headers={"If-None-Match": etag})
    assert {r: sample(r) - before[r] for r in before} == {"hit": 1, "miss": 1, "not_modified": 1}
