"""The OpenAPI diff behind `changes-to`, on small hand-written documents."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.versioning.changelog import changelog

REF = "#/components/schemas/"


def envelope(data: dict[str, Any]) -> dict[str, Any]:
    """A success response whose `data` has schema `data` (the shape build_spec emits)."""
    schema = {"allOf": [{"$ref": REF + "Envelope"}, {"properties": {"data": data}}]}
    return {"description": "ok", "content": {"application/json": {"schema": schema}}}


def document(prefix: str) -> dict[str, Any]:
    """A document with one read and one write operation under `prefix`."""
    return {
        "openapi": "3.1.0",
        "paths": {
            f"{prefix}/things": {
                "get": {
                    "operationId": "list_things",
                    "parameters": [
                        {
                            "name": "limit",
                            "in": "query",
                            "required": False,
                            "schema": {"type": "integer"},
                        },
                    ],
                    "responses": {"200": envelope({"$ref": REF + "Things"}), "422": {}},
                    "security": [],
                },
                "post": {
                    "operationId": "create_thing",
                    "requestBody": {
                        "content": {"application/json": {"schema": {"$ref": REF + "ThingIn"}}}
                    },
                    "responses": {"201": envelope({"$ref": REF + "Thing"})},
                    "security": [{"bearerAuth": []}],
                    "x-required-roles": ["user"],
                },
            },
            "/livez": {"get": {"responses": {"200": envelope({})}}},
        },
        "components": {
            "schemas": {
                "Envelope": {"type": "object", "properties": {"data": {}}},
                "Thing": {
                    "type": "object",
                    "properties": {
                        "id": {"type": "string"},
                        "size": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                        "parent": {"anyOf": [{"$ref": REF + "Thing"}, {"type": "null"}]},
                    },
                    "required": ["id"],
                },
                "Things": {
                    "type": "object",
                    "properties": {"data": {"type": "array", "items": {"$ref": REF + "Thing"}}},
                },
                "ThingIn": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "colour": {"enum": ["red", "blue"], "type": "string"},
                    },
                    "required": ["name"],
                },
            }
        },
    }


def diff(edit: Any) -> dict[str, Any]:
    """Changelog from the base document (/v1) to an edited copy (/v2)."""
    old = document("/v1")
    new = document("/v2")
    edit(new)
    return changelog(old, new, old_version="1.0", new_version="2.0")


def only_change(result: dict[str, Any], method: str) -> dict[str, Any]:
    """The single change of operation `method /things`."""
    entries = [c for c in result["changed"] if (c["method"], c["path"]) == (method, "/things")]
    assert len(entries) == 1, result
    changes = entries[0]["changes"]
    assert len(changes) == 1, changes
    assert entries[0]["breaking"] is changes[0]["breaking"]
    return changes[0]  # type: ignore[no-any-return]


def test_identical_documents_under_different_prefixes_have_no_changes() -> None:
    result = diff(lambda _: None)
    assert result["summary"] == {
        "added": 0,
        "removed": 0,
        "changed": 0,
        "unchanged": 2,
        "breaking": 0,
    }


def test_added_and_removed_operations_are_listed_and_removal_breaks() -> None:
    def edit(d: dict[str, Any]) -> None:
        d["paths"]["/v2/other"] = {"get": copy.deepcopy(d["paths"]["/v2/things"]["get"])}
        del d["paths"]["/v2/things"]["post"]

    result = diff(edit)
    assert [(a["method"], a["path"]) for a in result["added"]] == [("GET", "/other")]
    assert [(r["method"], r["path"], r["breaking"]) for r in result["removed"]] == [
        ("POST", "/things", True)
    ]


def _schemas(d: dict[str, Any]) -> dict[str, Any]:
    return d["components"]["schemas"]  # type: ignore[no-any-return]


CASES = [
    pytest.param(
        lambda d: _schemas(d)["Thing"]["properties"].pop("size"),
        ("response.200.data", "data[].size", "property_removed", True),
        id="response-field-removed-breaks",
    ),
    pytest.param(
        lambda d: _schemas(d)["Thing"]["properties"].update(colour={"type": "string"}),
        ("response.200.data", "data[].colour", "property_added", False),
        id="response-field-added-is-safe",
    ),
    pytest.param(
        lambda d: _schemas(d)["Thing"]["properties"].update(id={"type": "integer"}),
        ("response.200.data", "data[].id", "type_changed", True),
        id="type-change-breaks",
    ),
    pytest.param(
        lambda d: d["paths"]["/v2/things"]["get"]["parameters"].append(
            {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}}
        ),
        ("parameter.query", "q", "parameter_added", True),
        id="required-parameter-added-breaks",
    ),
    pytest.param(
        lambda d: d["paths"]["/v2/things"]["get"]["parameters"][0].update(required=True),
        ("parameter.query", "limit", "required", True),
        id="parameter-made-required-breaks",
    ),
    pytest.param(
        lambda d: d["paths"]["/v2/things"]["get"]["responses"].update({"429": {}}),
        ("response", "429", "error_status_added", False),
        id="new-error-status-is-safe",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), CASES)
def test_read_operation_changes_are_classified(edit: Any, expected: tuple[Any, ...]) -> None:
    change = only_change(diff(edit), "GET")
    assert (change["location"], change["path"], change["change"], change["breaking"]) == expected


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (
            lambda d: _schemas(d)["ThingIn"]["required"].append("colour"),
            ("request", "colour", "required", True),
        ),
        (
            lambda d: _schemas(d)["ThingIn"]["properties"]["colour"].update(enum=["red"]),
            ("request", "colour", "enum_changed", True),
        ),
        (
            lambda d: _schemas(d)["ThingIn"]["properties"]["colour"].update(
                enum=["red", "blue", "x"]
            ),
            ("request", "colour", "enum_changed", False),
        ),
        (
            lambda d: d["paths"]["/v2/things"]["post"].update({"x-required-roles": ["admin"]}),
            ("security", "(root)", "authorization_changed", True),
        ),
    ],
)
def test_write_operation_changes_are_classified(edit: Any, expected: tuple[Any, ...]) -> None:
    change = only_change(diff(edit), "POST")
    assert (change["location"], change["path"], change["change"], change["breaking"]) == expected


def test_recursive_schemas_do_not_loop() -> None:
    result = diff(lambda d: _schemas(d)["Thing"]["properties"].update(id={"type": "string"}))
    assert result["summary"]["changed"] == 0
