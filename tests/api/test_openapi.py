"""`/v{n}/openapi.json`: a valid OpenAPI 3.1 document that matches what the app does."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import OpenAPIV31SpecValidator, validate
from sqlmodel import Session

from app.core.errors import ErrorCode
from app.core.openapi import COMMON_PATHS, Operation, find_operation
from app.core.request_context import REQUEST_ID_HEADER
from app.factory import API_VERSIONS
from tests.support.accounts import signed_in

MAJORS = sorted(API_VERSIONS)
REF = "#/components/schemas/"
RULE_ARG = re.compile(r"<(?:[^:<>]+:)?(?P<name>\w+)>")


def fetch_spec(client: FlaskClient, major: int) -> dict[str, Any]:
    """The served document of one major version."""
    response = client.get(f"/v{major}/openapi.json")
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    document: dict[str, Any] = response.get_json()
    return document


def declared_operations(app: Flask, major: int) -> dict[tuple[str, str], Operation]:
    """(OpenAPI path, method) -> the `@operation` of every route a version documents."""
    found: dict[tuple[str, str], Operation] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith((f"/v{major}/", *COMMON_PATHS)):
            continue
        op = find_operation(app.view_functions[rule.endpoint])
        if op is None:
            continue
        # Werkzeug spells `<uuid:note_id>` where OpenAPI spells `{note_id}`.
        path = RULE_ARG.sub(r"{\g<name>}", rule.rule)
        for method in (rule.methods or set()) - {"HEAD", "OPTIONS"}:
            found[(path, method.lower())] = op
    return found


def resolve(spec: dict[str, Any], ref: str) -> dict[str, Any]:
    """The component a local `$ref` points at."""
    assert ref.startswith(REF), ref
    schema: dict[str, Any] = spec["components"]["schemas"][ref[len(REF) :]]
    return schema


@pytest.mark.parametrize("major", MAJORS)
def test_document_is_valid_openapi_3_1(client: FlaskClient, major: int) -> None:
    spec = fetch_spec(client, major)

    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["version"] == API_VERSIONS[major]
    validate(spec, cls=OpenAPIV31SpecValidator)


@pytest.mark.parametrize("major", MAJORS)
def test_every_declared_operation_is_documented_and_nothing_else(
    app: Flask, client: FlaskClient, major: int
) -> None:
    spec = fetch_spec(client, major)
    documented = {(path, method) for path, item in spec["paths"].items() for method in item}

    declared = set(declared_operations(app, major))
    assert declared, "no @operation routes found: the route walk is broken"
    assert documented == declared


def test_probes_and_notes_example_are_in_v1(client: FlaskClient) -> None:
    paths = fetch_spec(client, 1)["paths"]

    assert {"/livez", "/readyz", "/v1/notes", "/v1/notes/{note_id}"} <= set(paths)
    assert set(paths["/v1/notes/{note_id}"]) == {"get", "patch", "delete"}


@pytest.mark.parametrize("major", MAJORS)
def test_operation_ids_are_unique(client: FlaskClient, major: int) -> None:
    spec = fetch_spec(client, major)
    ids = [op["operationId"] for item in spec["paths"].values() for op in item.values()]

    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("major", MAJORS)
def test_error_code_enum_lists_the_whole_catalogue(client: FlaskClient, major: int) -> None:
    codes = fetch_spec(client, major)["components"]["schemas"]["ErrorCode"]

    assert codes["type"] == "string"
    assert codes["enum"] == [c.value for c in ErrorCode]
    for code in ErrorCode:
        assert f"`{code.value}` ({code.status})" in codes["description"]


@pytest.mark.parametrize("major", MAJORS)
def test_request_bodies_reference_their_pydantic_models(
    app: Flask, client: FlaskClient, major: int
) -> None:
    spec = fetch_spec(client, major)
    with_body = {k: op for k, op in declared_operations(app, major).items() if op.body}
    assert with_body, "v1 has body-taking operations (the notes example)"

    for (path, method), op in with_body.items():
        assert op.body is not None
        body = spec["paths"][path][method]["requestBody"]
        assert body["required"] is True
        schema = body["content"]["application/json"]["schema"]
        assert set(schema) == {"$ref"}, schema
        component = resolve(spec, schema["$ref"])
        expected = op.body.model_json_schema(mode="validation")
        # Titles keep the model's name, generics included (`ConfigBody[ApiVersionSpec]`);
        # the component key is pydantic's sanitised form of it.
        assert component["title"] == expected["title"]
        assert set(component["properties"]) == set(expected["properties"])
        assert component.get("required", []) == expected.get("required", [])
        if op.body.model_config.get("extra") == "forbid":
            assert component["additionalProperties"] is False


@pytest.mark.parametrize("major", MAJORS)
def test_success_responses_wrap_the_response_model_in_the_envelope(
    app: Flask, client: FlaskClient, major: int
) -> None:
    spec = fetch_spec(client, major)

    for (path, method), op in declared_operations(app, major).items():
        success = spec["paths"][path][method]["responses"][str(op.status)]
        schema = success["content"]["application/json"]["schema"]
        envelope, data = schema["allOf"]
        assert envelope == {"$ref": REF + "Envelope"}
        if op.response is not None:
            ref = data["properties"]["data"]["$ref"]
            title = op.response.model_json_schema(mode="serialization")["title"]
            assert resolve(spec, ref)["title"] == title


def _expected_error_statuses(op: Operation) -> set[int]:
    statuses = set(op.errors) | {500}
    if op.body is not None:
        statuses |= {400, 413, 415, 422}
    if op.query is not None:
        statuses.add(422)
    if op.auth:
        statuses |= {401, 403}
    return statuses


@pytest.mark.parametrize("major", MAJORS)
def test_documented_responses_include_every_error_status(
    app: Flask, client: FlaskClient, major: int
) -> None:
    spec = fetch_spec(client, major)

    for (path, method), op in declared_operations(app, major).items():
        responses = spec["paths"][path][method]["responses"]
        documented = {int(s) for s in responses} - {op.status, *op.also}
        assert documented == _expected_error_statuses(op), f"{method.upper()} {path}"
        for status in documented:
            schema = responses[str(status)]["content"]["application/json"]["schema"]
            assert schema == {"$ref": REF + "Envelope"}


def _matches(spec: dict[str, Any], instance: Any, schema: dict[str, Any]) -> None:
    # Local `$ref`s resolve against the root, so the components travel with the schema.
    OAS31Validator({**schema, "components": spec["components"]}).validate(instance)


MISSING = str(uuid.UUID(int=0))
REAL_RESPONSES: list[tuple[str, str, str, dict[str, Any], int]] = [
    ("GET", "/livez", "/livez", {}, 200),
    ("GET", "/readyz", "/readyz", {}, 200),
    ("GET", "/v1/notes", "/v1/notes", {}, 200),
    ("GET", "/v1/notes?limit=0", "/v1/notes", {}, 422),
    ("POST", "/v1/notes", "/v1/notes", {"json": {"title": "t"}}, 201),
    ("POST", "/v1/notes", "/v1/notes", {"json": {"title": ""}}, 422),
    ("POST", "/v1/notes", "/v1/notes", {"json": {"title": "t", "extra": 1}}, 422),
    ("POST", "/v1/notes", "/v1/notes", {"data": "{", "content_type": "application/json"}, 400),
    ("POST", "/v1/notes", "/v1/notes", {"data": "t", "content_type": "text/plain"}, 415),
    ("GET", f"/v1/notes/{MISSING}", "/v1/notes/{note_id}", {}, 404),
    ("PATCH", f"/v1/notes/{MISSING}", "/v1/notes/{note_id}", {"json": {"title": "x"}}, 404),
    ("DELETE", f"/v1/notes/{MISSING}", "/v1/notes/{note_id}", {}, 404),
    ("POST", "/v1/notes", "/v1/notes", {"anonymous": True, "json": {"title": "t"}}, 401),
]


@pytest.mark.parametrize(
    ("method", "url", "path", "kwargs", "status"),
    REAL_RESPONSES,
    ids=[f"{m} {u} -> {s}" for m, u, _, k, s in REAL_RESPONSES],
)
def test_real_responses_have_a_documented_status_and_match_its_schema(
    client: FlaskClient,
    session: Session,
    method: str,
    url: str,
    path: str,
    kwargs: dict[str, Any],
    status: int,
) -> None:
    spec = fetch_spec(client, 1)
    kwargs = dict(kwargs)
    # The notes example needs a signed-in user; `anonymous` asks without one.
    if url.startswith("/v1/notes") and not kwargs.pop("anonymous", False):
        kwargs["headers"] = signed_in(session)

    response = client.open(url, method=method, **kwargs)

    assert response.status_code == status, response.get_data(as_text=True)
    responses = spec["paths"][path][method.lower()]["responses"]
    assert str(status) in responses
    _matches(
        spec, response.get_json(), responses[str(status)]["content"]["application/json"]["schema"]
    )


@pytest.mark.parametrize("major", [9, 0, 99])
def test_unknown_version_document_is_a_404_envelope(client: FlaskClient, major: int) -> None:
    response = client.get(f"/v{major}/openapi.json")

    assert response.status_code == 404
    body = response.get_json()
    assert body["success"] is False
    assert body["data"] is None
    assert body["error"]["code"] == ErrorCode.RES_NOT_FOUND.value
    assert f"v{major}" in body["message"]
    assert body["meta"]["request_id"] == response.headers[REQUEST_ID_HEADER]
    _matches(fetch_spec(client, 1), body, {"$ref": REF + "Envelope"})


def test_document_is_served_identically_on_repeat(client: FlaskClient) -> None:
    first = client.get("/v1/openapi.json").get_data()

    assert client.get("/v1/openapi.json").get_data() == first
