"""The extension point: an extension's models, services and views work without core edits."""

from __future__ import annotations

import uuid

from flask import Flask
from flask.testing import FlaskClient
from sqlmodel import Session

from app import custom
from app.custom.notes import services
from app.custom.notes.models import Note, NoteCreate


def test_extensions_are_discovered_by_package_name() -> None:
    assert "app.custom.notes" in list(custom.extensions())


def test_extension_routes_are_registered_and_documented(app: Flask, client: FlaskClient) -> None:
    assert "custom_notes.create_note" in app.view_functions
    paths = client.get("/v1/openapi.json").get_json()["paths"]
    assert {"/v1/notes", "/v1/notes/{note_id}"} <= set(paths)


def test_note_round_trip_through_the_api(client: FlaskClient, session: Session) -> None:
    created = client.post("/v1/notes", json={"title": "Hello", "body": "World"})
    assert created.status_code == 201
    note = created.get_json()["data"]
    assert created.headers["Location"] == f"/v1/notes/{note['id']}"
    assert session.get(Note, uuid.UUID(note["id"])) is not None

    fetched = client.get(f"/v1/notes/{note['id']}").get_json()
    assert fetched["data"]["title"] == "Hello"
    assert fetched["meta"]["api_version"] == "1.0"

    patched = client.patch(f"/v1/notes/{note['id']}", json={"title": "Hi"})
    assert patched.status_code == 200
    assert patched.get_json()["data"]["title"] == "Hi"
    assert patched.get_json()["data"]["body"] == "World"

    listing = client.get("/v1/notes?limit=5").get_json()["data"]
    assert listing["count"] == 1 and listing["data"][0]["id"] == note["id"]


def test_unknown_fields_and_bad_pagination_are_validation_errors(client: FlaskClient) -> None:
    extra = client.post("/v1/notes", json={"title": "x", "admin": True})
    assert extra.status_code == 422
    assert extra.get_json()["error"]["errors"][0]["field"] == "admin"
    paging = client.get("/v1/notes?limit=1000")
    assert paging.status_code == 422
    assert paging.get_json()["error"]["errors"][0]["field"] == "limit"


def test_missing_note_is_404_and_malformed_id_is_404(client: FlaskClient) -> None:
    missing = client.get(f"/v1/notes/{uuid.uuid4()}")
    assert missing.status_code == 404
    assert missing.get_json()["error"]["code"] == "RES_NOT_FOUND"
    assert client.get("/v1/notes/not-a-uuid").status_code == 404


def test_services_are_usable_without_http(session: Session) -> None:
    note = services.create_note(session=session, data=NoteCreate(title="direct"))
    rows, total = services.list_notes(session=session, limit=10, offset=0)
    assert total == 1 and rows[0].id == note.id
