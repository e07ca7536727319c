"""`GET /versions`, `GET /versions/{a}/changes-to/{b}` and the v2 notes contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from app.api.v2 import CHANGED, REMOVED
from app.api.v2.carry import Op
from app.core.openapi import openapi_document
from tests.versioning.conftest import Declare, Headers

NOW = datetime.now(UTC).replace(microsecond=0)


def test_versions_lists_served_versions_newest_first_with_default_phases(
    client: FlaskClient,
) -> None:
    response = client.get("/versions")
    assert response.status_code == 200 and "API-Version" not in response.headers
    data = response.get_json()["data"]
    rows = [(v["version"], v["phase"], v["served"]) for v in data["data"]]
    assert rows == [("2.0", "Current", True), ("1.0", "Supported", True)]
    assert data["current"] == "2.0"
    assert data["data"][1]["links"] == {"openapi": "/v1/openapi.json"}


def test_versions_reflects_the_store_including_versions_only_it_knows(
    client: FlaskClient, declare: Declare
) -> None:
    window = NOW + timedelta(days=7)
    declare(
        "v1",
        version="1.0",
        phase="Deprecated",
        deprecatedAt=(NOW - timedelta(days=1)).isoformat(),
        sunsetAt=(NOW + timedelta(days=30)).isoformat(),
        successor="2.0",
        brownouts=[
            {"start": window.isoformat(), "duration": "2h"},
            {"start": (NOW - timedelta(days=3)).isoformat(), "duration": "1h"},
        ],
        links={"docs": "https://example.com/v1"},
    )
    snapshot = declare("next", version="3.0", phase="Supported")  # announced, not yet served
    data = client.get("/versions").get_json()["data"]
    by_version = {v["version"]: v for v in data["data"]}
    assert list(by_version) == ["3.0", "2.0", "1.0"]
    v1 = by_version["1.0"]
    assert (v1["phase"], v1["declaredPhase"], v1["successor"]) == (
        "Deprecated",
        "Deprecated",
        "2.0",
    )
    assert v1["links"]["changelog"] == "/versions/1.0/changes-to/2.0"
    assert v1["links"]["docs"] == "https://example.com/v1"
    starts = [datetime.fromisoformat(b["start"]) for b in v1["brownouts"]]
    assert starts == [window]  # windows already over are dropped
    assert by_version["3.0"]["served"] is False and "openapi" not in by_version["3.0"]["links"]
    assert data["current"] == "2.0"
    assert data["generation"] == snapshot.generation


def changed(body: dict[str, object], method: str, path: str) -> dict[str, object]:
    """The changed-operation entry of a changelog."""
    entries = [c for c in body["changed"] if (c["method"], c["path"]) == (method, path)]  # type: ignore[attr-defined,index]
    assert len(entries) == 1, body
    return entries[0]  # type: ignore[no-any-return]


def test_changelog_from_1_to_2_lists_exactly_the_decision_table(client: FlaskClient) -> None:
    body = client.get("/versions/1.0/changes-to/2.0").get_json()["data"]
    assert (body["from"], body["to"]) == ("1.0", "2.0")
    assert body["added"] == []
    assert {Op(r["method"], r["path"]) for r in body["removed"]} == set(REMOVED)
    assert {Op(c["method"], c["path"]) for c in body["changed"]} == set(CHANGED)
    listing = changed(body, "GET", "/notes")
    assert listing["breaking"] is True
    assert (listing["from"], listing["to"]) == ("/v1/notes", "/v2/notes")
    found = {(c["location"], c["path"], c["change"]) for c in listing["changes"]}
    assert found == {
        ("parameter.query", "offset", "parameter_removed"),
        ("parameter.query", "cursor", "parameter_added"),
        ("response.200.data", "data", "property_removed"),
        ("response.200.data", "count", "property_removed"),
        ("response.200.data", "items", "property_added"),
        ("response.200.data", "next_cursor", "property_added"),
    }
    paths = openapi_document(1)["paths"]
    v1_operations = sum(len(item) for path, item in paths.items() if path.startswith("/v1/"))
    assert body["summary"] == {
        "added": 0,
        "removed": len(REMOVED),
        "changed": len(CHANGED),
        "unchanged": v1_operations - len(CHANGED) - len(REMOVED),
        "breaking": len(REMOVED) + len(CHANGED),
    }


MIRROR = {
    "parameter_added": "parameter_removed",
    "property_added": "property_removed",
    "required": "optional",
    "request_body_added": "request_body_removed",
    "error_status_added": "error_status_removed",
}
MIRROR |= {after: before for before, after in MIRROR.items()}


def test_changelog_back_from_2_to_1_is_the_inverse(client: FlaskClient) -> None:
    forward = client.get("/versions/1.0/changes-to/2.0").get_json()["data"]
    back = client.get("/versions/v2/changes-to/1").get_json()["data"]
    assert (back["from"], back["to"]) == ("2.0", "1.0")
    pairs = [("added", "removed"), ("removed", "added")]
    for mine, theirs in pairs:
        assert {(e["method"], e["path"]) for e in back[mine]} == {
            (e["method"], e["path"]) for e in forward[theirs]
        }
        assert back["summary"][mine] == forward["summary"][theirs]
    assert back["summary"]["unchanged"] == forward["summary"]["unchanged"]
    assert [(c["method"], c["path"]) for c in back["changed"]] == [
        (c["method"], c["path"]) for c in forward["changed"]
    ]
    for there, home in zip(forward["changed"], back["changed"], strict=True):
        assert (home["from"], home["to"]) == (there["to"], there["from"])
        assert {(c["location"], c["path"], MIRROR[c["change"]]) for c in home["changes"]} == {
            (c["location"], c["path"], c["change"]) for c in there["changes"]
        }


@pytest.mark.parametrize("path", ["/versions/3.0/changes-to/1.0", "/versions/1.0/changes-to/x"])
def test_changelog_of_an_unserved_version_is_404_version_unknown(
    client: FlaskClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "VERSION_UNKNOWN"


def test_v2_notes_pages_with_an_opaque_cursor(client: FlaskClient, bearer_for: Headers) -> None:
    me = bearer_for("user")
    ids = [
        client.post("/v2/notes", json={"title": f"n{i}"}, headers=me).get_json()["data"]["id"]
        for i in range(5)
    ]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(3):
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = client.get("/v2/notes" + query, headers=me)
        assert response.status_code == 200 and response.get_json()["meta"]["api_version"] == "2.0"
        page = response.get_json()["data"]
        assert set(page) == {"items", "next_cursor"}
        seen += [n["id"] for n in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen[:5] == list(reversed(ids))  # newest first, no duplicates, no gaps
    v1 = client.get("/v1/notes?limit=2", headers=me).get_json()["data"]
    assert set(v1) == {"data", "count"} and v1["count"] == 5


def test_a_forged_cursor_is_a_validation_error(client: FlaskClient, bearer_for: Headers) -> None:
    response = client.get("/v2/notes?cursor=bm90LWEtY3Vyc29y", headers=bearer_for("user"))
    assert response.status_code == 422
    assert response.get_json()["error"]["errors"][0]["field"] == "cursor"
