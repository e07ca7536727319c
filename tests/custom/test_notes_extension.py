"""The extension point: an extension's models, services and views work without core edits.

The notes example needs a signed-in user and keeps each user's notes to that user, on
/v1 and on /v2 (where its views are carried over and the listing uses cursors).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from prometheus_client import REGISTRY
from sqlalchemy import Connection, text
from sqlmodel import Session

from app import custom
from app.auth import api_keys
from app.auth.state import auth_state
from app.custom.notes import services
from app.custom.notes.models import MAX_COUNT, MAX_OFFSET, MAX_PAGE, Note, NoteCreate
from tests.support.accounts import bearer, new_user, signed_in

PREFIXES = ["/v1", "/v2"]
Headers = dict[str, str]


def items(listing: dict[str, Any]) -> list[dict[str, Any]]:
    """The notes of a v1 (`data`) or v2 (`items`) page."""
    page: list[dict[str, Any]] = listing.get("data", listing.get("items"))
    return page


def write(client: FlaskClient, prefix: str, headers: Headers, title: str = "mine") -> str:
    """Create a note as `headers`' user; its id."""
    response = client.post(f"{prefix}/notes", json={"title": title}, headers=headers)
    assert response.status_code == 201, response.get_json()
    note_id: str = response.get_json()["data"]["id"]
    return note_id


def test_extensions_are_discovered_by_package_name() -> None:
    assert "app.custom.notes" in list(custom.extensions())


def test_extension_routes_are_registered_and_documented(app: Flask, client: FlaskClient) -> None:
    assert "custom_notes.create_note" in app.view_functions
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert {"/v1/notes", "/v1/notes/{note_id}"} <= set(paths)
    assert set(paths["/v1/notes/{note_id}"]) == {"get", "patch", "delete"}
    for item in [paths["/v1/notes"]["post"], paths["/v1/notes/{note_id}"]["delete"]]:
        assert item["security"] and "401" in item["responses"]


@pytest.mark.parametrize("prefix", PREFIXES)
def test_note_round_trip_through_the_api(
    client: FlaskClient, session: Session, prefix: str
) -> None:
    me = signed_in(session)
    created = client.post(f"{prefix}/notes", json={"title": "Hello", "body": "World"}, headers=me)
    assert created.status_code == 201
    note = created.get_json()["data"]
    assert created.headers["Location"] == f"{prefix}/notes/{note['id']}"
    assert session.get(Note, uuid.UUID(note["id"])) is not None

    fetched = client.get(f"{prefix}/notes/{note['id']}", headers=me).get_json()
    assert fetched["data"]["title"] == "Hello"
    assert fetched["meta"]["api_version"] == prefix[2:] + ".0"

    patched = client.patch(f"{prefix}/notes/{note['id']}", json={"title": "Hi"}, headers=me)
    assert patched.status_code == 200
    assert patched.get_json()["data"]["title"] == "Hi"
    assert patched.get_json()["data"]["body"] == "World"

    listing = client.get(f"{prefix}/notes?limit=5", headers=me).get_json()["data"]
    assert [n["id"] for n in items(listing)] == [note["id"]]

    deleted = client.delete(f"{prefix}/notes/{note['id']}", headers=me)
    assert deleted.status_code == 200
    assert client.get(f"{prefix}/notes/{note['id']}", headers=me).status_code == 404


@pytest.mark.parametrize("prefix", PREFIXES)
def test_anonymous_callers_get_401_on_every_notes_route(client: FlaskClient, prefix: str) -> None:
    some_id = uuid.uuid4()
    calls = [
        client.post(f"{prefix}/notes", json={"title": "anonymous"}),
        client.post(f"{prefix}/notes", json={"admin": True}),  # authorized before validated
        client.get(f"{prefix}/notes"),
        client.get(f"{prefix}/notes?offset=1000000&limit=100"),
        client.get(f"{prefix}/notes/{some_id}"),
        client.patch(f"{prefix}/notes/{some_id}", json={"title": "x"}),
        client.delete(f"{prefix}/notes/{some_id}"),
    ]

    for response in calls:
        assert response.status_code == 401, response.request.path
        assert response.get_json()["error"]["code"] == "AUTH_REQUIRED"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_anonymous_write_stores_nothing(client: FlaskClient, connection: Connection) -> None:
    def count() -> int:
        return int(connection.execute(text("SELECT count(*) FROM custom_notes")).scalar_one())

    before = count()
    client.post("/v1/notes", json={"title": "anonymous"})
    client.post("/v2/notes", json={"title": "anonymous"})
    assert count() == before


@pytest.mark.parametrize("prefix", PREFIXES)
def test_a_user_cannot_see_or_change_another_users_notes(
    client: FlaskClient, session: Session, prefix: str
) -> None:
    alice, bob = signed_in(session), signed_in(session)
    secret = write(client, prefix, alice, "alice's")
    bobs = write(client, prefix, bob, "bob's")

    # Listing: each sees exactly their own.
    assert [n["id"] for n in items(client.get(f"{prefix}/notes", headers=bob).json["data"])] == [
        bobs
    ]
    assert [n["id"] for n in items(client.get(f"{prefix}/notes", headers=alice).json["data"])] == [
        secret
    ]
    # Alice's note is, to Bob, exactly a note that does not exist.
    missing = uuid.uuid4()
    for note_id in (secret, missing):
        answers = [
            client.get(f"{prefix}/notes/{note_id}", headers=bob),
            client.patch(f"{prefix}/notes/{note_id}", json={"title": "bob was here"}, headers=bob),
            client.delete(f"{prefix}/notes/{note_id}", headers=bob),
        ]
        assert [r.status_code for r in answers] == [404, 404, 404]
        bodies = [r.get_json() for r in answers]
        assert {(b["error"]["code"], b["message"]) for b in bodies} == {
            ("RES_NOT_FOUND", f"Note {note_id} does not exist.")
        }

    untouched = client.get(f"{prefix}/notes/{secret}", headers=alice)
    assert untouched.status_code == 200 and untouched.json["data"]["title"] == "alice's"


def test_a_cursor_from_another_users_page_only_pages_the_callers_own_notes(
    client: FlaskClient, session: Session
) -> None:
    alice, bob = signed_in(session), signed_in(session)
    for i in range(3):
        write(client, "/v2", alice, f"a{i}")
    mine = write(client, "/v2", bob, "b")
    cursor = client.get("/v2/notes?limit=1", headers=alice).json["data"]["next_cursor"]
    assert cursor is not None

    page = client.get(f"/v2/notes?cursor={cursor}", headers=bob).json["data"]

    assert [n["id"] for n in page["items"]] in ([], [mine])
    assert all(n["title"] == "b" for n in page["items"])


def test_a_readonly_user_reads_but_cannot_write(client: FlaskClient, session: Session) -> None:
    reader = signed_in(session, roles=("readonly",))
    assert client.get("/v1/notes", headers=reader).status_code == 200
    refused = client.post("/v1/notes", json={"title": "x"}, headers=reader)
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "AUTH_FORBIDDEN"


def test_api_keys_are_refused(client: FlaskClient, session: Session) -> None:
    owner = new_user(session)
    _, key = api_keys.create_api_key(
        session=session, auth=auth_state(), user_id=owner, name="n", scopes=["profile:read"]
    )
    response = client.get("/v1/notes", headers={"X-API-Key": key})
    assert response.status_code == 403
    assert response.get_json()["error"]["code"] == "AUTH_FORBIDDEN"


@pytest.mark.parametrize("prefix", PREFIXES)
def test_page_size_is_capped(client: FlaskClient, session: Session, prefix: str) -> None:
    me = signed_in(session)
    assert client.get(f"{prefix}/notes?limit={MAX_PAGE}", headers=me).status_code == 200
    paging = client.get(f"{prefix}/notes?limit={MAX_PAGE + 1}", headers=me)
    assert paging.status_code == 422
    assert paging.get_json()["error"]["errors"][0]["field"] == "limit"


def test_v1_offsets_are_capped(client: FlaskClient, session: Session) -> None:
    me = signed_in(session)
    assert client.get(f"/v1/notes?offset={MAX_OFFSET}", headers=me).status_code == 200
    deep = client.get(f"/v1/notes?offset={MAX_OFFSET + 1}", headers=me)
    assert deep.status_code == 422
    assert deep.get_json()["error"]["errors"][0]["field"] == "offset"


def test_the_v1_count_is_bounded_and_only_counts_the_callers_notes(
    client: FlaskClient, session: Session, connection: Connection
) -> None:
    heavy, light = new_user(session), new_user(session)
    connection.execute(
        text(
            "INSERT INTO custom_notes (id, title, body, owner_id) "
            "SELECT gen_random_uuid(), 'n' || i, '', :owner FROM generate_series(1, :n) i"
        ),
        {"owner": heavy, "n": MAX_COUNT + 5},
    )
    write(client, "/v1", bearer(light))

    heavy_page = client.get("/v1/notes?limit=2", headers=bearer(heavy)).get_json()["data"]
    light_page = client.get("/v1/notes", headers=bearer(light)).get_json()["data"]

    assert (heavy_page["count"], len(heavy_page["data"])) == (MAX_COUNT, 2)
    assert light_page["count"] == 1


def test_unknown_fields_are_validation_errors(client: FlaskClient, session: Session) -> None:
    extra = client.post("/v1/notes", json={"title": "x", "admin": True}, headers=signed_in(session))
    assert extra.status_code == 422
    assert extra.get_json()["error"]["errors"][0]["field"] == "admin"


def test_missing_note_is_404_and_malformed_id_is_404(client: FlaskClient, session: Session) -> None:
    me = signed_in(session)
    missing = client.get(f"/v1/notes/{uuid.uuid4()}", headers=me)
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "RES_NOT_FOUND"
    assert client.get("/v1/notes/not-a-uuid", headers=me).status_code == 404


def test_services_are_usable_without_http(session: Session) -> None:
    owner, other = new_user(session), new_user(session)
    note = services.create_note(session=session, owner_id=owner, data=NoteCreate(title="direct"))

    rows, total = services.list_notes(session=session, owner_id=owner, limit=10, offset=0)
    assert total == 1 and rows[0].id == note.id
    assert services.list_notes(session=session, owner_id=other, limit=10, offset=0) == ([], 0)


@pytest.mark.parametrize("prefix", PREFIXES)
def test_the_listing_is_cached_per_caller_and_every_write_invalidates_it(
    client: FlaskClient, session: Session, prefix: str
) -> None:
    alice, bob = signed_in(session), signed_in(session)
    first = write(client, prefix, alice, "first")

    def listing(headers: Headers, **extra: str) -> Any:
        return client.get(f"{prefix}/notes", headers={**headers, **extra})

    def ids(response: Any) -> list[str]:
        return [n["id"] for n in items(response.get_json()["data"])]

    miss, hit = listing(alice), listing(alice)
    assert (miss.headers["X-Cache"], hit.headers["X-Cache"]) == ("MISS", "HIT")
    assert ids(hit) == ids(miss) == [first]
    assert hit.headers["Vary"] == "Authorization, X-API-Key"
    assert listing(alice, **{"If-None-Match": hit.headers["ETag"]}).status_code == 304
    # Another caller has its own entry: never alice's notes.
    assert listing(bob).headers["X-Cache"] == "MISS" and ids(listing(bob)) == []

    # Each kind of write makes the next listing fresh, through either version's routes.
    second = write(client, prefix, alice, "second")
    after_create = listing(alice)
    assert after_create.headers["X-Cache"] == "MISS" and ids(after_create) == [second, first]
    assert listing(alice, **{"If-None-Match": hit.headers["ETag"]}).status_code == 200

    client.patch(f"{prefix}/notes/{first}", json={"title": "renamed"}, headers=alice)
    titles = [n["title"] for n in items(listing(alice).get_json()["data"])]
    assert titles == ["second", "renamed"]

    assert client.delete(f"{prefix}/notes/{second}", headers=alice).status_code == 200
    assert ids(listing(alice)) == [first]

    # A refused write invalidates nothing: the entry stays a hit.
    listing(alice)
    assert (
        client.patch(f"{prefix}/notes/{second}", json={"title": "x"}, headers=alice).status_code
        == 404
    )
    assert listing(alice).headers["X-Cache"] == "HIT"


def test_cache_metrics_count_hits_misses_and_invalidations(
    client: FlaskClient, session: Session
) -> None:
    me = signed_in(session)

    def sample(name: str, **labels: str) -> float:
        return REGISTRY.get_sample_value(name, labels) or 0.0

    before = {
        r: sample("sapi_cache_requests_total", cache="list_notes", result=r)
        for r in ("miss", "hit", "not_modified")
    }
    invalidations = sample("sapi_cache_invalidations_total", cache="create_note")
    write(client, "/v1", me)
    etag = client.get("/v1/notes", headers=me).headers["ETag"]
    client.get("/v1/notes", headers=me)
    client.get("/v1/notes", headers={**me, "If-None-Match": etag})
    after = {r: sample("sapi_cache_requests_total", cache="list_notes", result=r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {"miss": 1, "hit": 1, "not_modified": 1}
    assert sample("sapi_cache_invalidations_total", cache="create_note") == invalidations + 1
