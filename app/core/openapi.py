"""OpenAPI 3.1 generated from the Pydantic models each view declares.

A view declares its contract with `@operation(...)`; the same declaration validates
the request (so documentation and behaviour cannot drift) and feeds the document
served at `/v{n}/openapi.json`.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Final, TypeVar, cast

from flask import Flask, current_app
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from app.core.encoding import dumps
from app.core.errors import NotFound
from app.core.errors.codes import ErrorCode
from app.core.validation import parse_body, parse_query

F = TypeVar("F", bound=Callable[..., Any])

ATTR: Final = "__api_operation__"
REF: Final = "#/components/schemas/{model}"
_CONVERTER = re.compile(r"<(?:(?P<conv>[a-z]+)(?:\([^)]*\))?:)?(?P<name>\w+)>")
_PARAM_SCHEMA: Final = {
    "int": {"type": "integer"},
    "float": {"type": "number"},
    "uuid": {"type": "string", "format": "uuid"},
    "path": {"type": "string"},
    None: {"type": "string"},
    "string": {"type": "string"},
}


@dataclass(frozen=True)
class Operation:
    """What a view accepts and returns, for validation and documentation."""

    summary: str
    tags: tuple[str, ...] = ()
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    status: int = 200
    auth: bool = False
    roles: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()
    description: str | None = None
    deprecated: bool = False
    extra_responses: dict[str, Any] = field(default_factory=dict)
    also: tuple[int, ...] = ()  # other success statuses with the same body (PUT: 200 or 201)


def operation(
    summary: str,
    *,
    tags: Iterable[str] = (),
    body: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    status: int = 200,
    auth: bool = False,
    roles: Iterable[str] = (),
    errors: Iterable[int] = (),
    description: str | None = None,
    also: Iterable[int] = (),
) -> Callable[[F], F]:
    """Declare a view's contract; injects validated `body=` / `query=` keyword arguments."""
    op = Operation(
        summary=summary,
        tags=tuple(tags),
        body=body,
        query=query,
        response=response,
        status=status,
        auth=auth,
        roles=tuple(roles),
        errors=tuple(errors),
        description=description,
        also=tuple(also),
    )

    def decorate(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if op.body is not None:
                kwargs["body"] = parse_body(op.body)
            if op.query is not None:
                kwargs["query"] = parse_query(op.query)
            return view(*args, **kwargs)

        setattr(wrapper, ATTR, op)
        return cast(F, wrapper)

    return decorate


def find_operation(view: Callable[..., Any]) -> Operation | None:
    """The declared operation of a view, looking through decorators."""
    current: Any = view
    while current is not None:
        op = getattr(current, ATTR, None)
        if op is not None:
            return cast(Operation, op)
        current = getattr(current, "__wrapped__", None)
    return None


def _envelope_schemas() -> dict[str, Any]:
    warning = {
        "type": "object",
        "required": ["code", "message", "level"],
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "level": {"type": "string", "enum": ["INFO", "WARN", "ERROR"]},
            "context": {"type": "object"},
        },
    }
    meta = {
        "type": "object",
        "properties": {
            "request_id": {"type": ["string", "null"]},
            "api_version": {"type": ["string", "null"]},
        },
    }
    error = {
        "type": "object",
        "required": ["code", "errors", "required_fields", "details"],
        "properties": {
            "code": {"$ref": REF.format(model="ErrorCode")},
            "errors": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
            },
            "required_fields": {"type": "array", "items": {"type": "string"}},
            "details": {"type": "object"},
        },
    }
    envelope = {
        "type": "object",
        "required": ["success", "message", "data", "error", "warnings", "meta"],
        "properties": {
            "success": {"type": "boolean"},
            "message": {"type": ["string", "null"]},
            "data": {},
            "error": {"anyOf": [{"$ref": REF.format(model="Error")}, {"type": "null"}]},
            "warnings": {"type": "array", "items": {"$ref": REF.format(model="Warning")}},
            "meta": {"$ref": REF.format(model="Meta")},
        },
    }
    codes = {
        "type": "string",
        "enum": [c.value for c in ErrorCode],
        "description": "\n".join(f"* `{c.value}` ({c.status}): {c.description}" for c in ErrorCode),
    }
    return {
        "Envelope": envelope,
        "Error": error,
        "Warning": warning,
        "Meta": meta,
        "ErrorCode": codes,
    }


def _path_and_params(rule: str) -> tuple[str, list[dict[str, Any]]]:
    params: list[dict[str, Any]] = []

    def repl(match: re.Match[str]) -> str:
        name = match.group("name")
        params.append(
            {
                "name": name,
                "in": "path",
                "required": True,
                "schema": dict(_PARAM_SCHEMA.get(match.group("conv"), {"type": "string"})),
            }
        )
        return "{" + name + "}"

    return _CONVERTER.sub(repl, rule), params


def _query_params(model: type[BaseModel]) -> list[dict[str, Any]]:
    schema = model.model_json_schema(ref_template=REF)
    required = set(schema.get("required", []))
    return [
        {
            "name": name,
            "in": "query",
            "required": name in required,
            "schema": prop,
            **({"description": prop["description"]} if "description" in prop else {}),
        }
        for name, prop in schema.get("properties", {}).items()
    ]


_ERROR_TEXT: Final = {
    400: "Malformed request",
    401: "Missing or invalid credentials",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    410: "Gone",
    413: "Body too large",
    415: "Wrong content type",
    422: "Validation failed",
    429: "Rate limited",
    500: "Internal error",
    503: "A dependency is unavailable",
}


def build_spec(
    app: Flask,
    *,
    version: str,
    path_prefixes: tuple[str, ...],
    title: str,
    description: str = "",
) -> dict[str, Any]:
    """The OpenAPI 3.1 document for the routes under `path_prefixes`."""
    body_models: list[type[BaseModel]] = []
    response_models: list[type[BaseModel]] = []
    ops: list[tuple[str, str, str, Operation, list[dict[str, Any]]]] = []
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.rule.startswith(path_prefixes):
            continue
        op = find_operation(app.view_functions[rule.endpoint])
        if op is None:
            continue
        path, params = _path_and_params(rule.rule)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            ops.append((path, method.lower(), rule.endpoint, op, params))
            if op.body is not None:
                body_models.append(op.body)
            if op.response is not None:
                response_models.append(op.response)

    inputs = [(m, "validation") for m in dict.fromkeys(body_models)]
    outputs = [(m, "serialization") for m in dict.fromkeys(response_models)]
    keys, defs = models_json_schema([*inputs, *outputs], ref_template=REF)  # type: ignore[list-item]
    schemas: dict[str, Any] = {**_envelope_schemas(), **defs.get("$defs", {})}

    paths: dict[str, dict[str, Any]] = {}
    for path, method, endpoint, op, params in ops:
        data_schema: dict[str, Any] = {}
        if op.response is not None:
            data_schema = keys[(op.response, "serialization")]
        success = {
            "description": op.summary,
            "content": {
                "application/json": {
                    "schema": {
                        "allOf": [
                            {"$ref": REF.format(model="Envelope")},
                            {"type": "object", "properties": {"data": data_schema}},
                        ]
                    }
                }
            },
        }
        responses: dict[str, Any] = {str(op.status): success}
        responses.update({str(extra): success for extra in op.also})
        error_statuses = set(op.errors) | {500}
        if op.body is not None:
            error_statuses |= {400, 413, 415, 422}
        if op.query is not None:
            error_statuses.add(422)
        if op.auth:
            error_statuses |= {401, 403}
        for status in sorted(error_statuses):
            responses[str(status)] = {
                "description": _ERROR_TEXT.get(status, "Error"),
                "content": {"application/json": {"schema": {"$ref": REF.format(model="Envelope")}}},
            }
        entry: dict[str, Any] = {
            "operationId": endpoint.replace(".", "_") + ("" if method == "get" else f"_{method}"),
            "summary": op.summary,
            "tags": list(op.tags),
            "responses": responses,
        }
        if op.description:
            entry["description"] = op.description
        parameters = list(params) + (_query_params(op.query) if op.query else [])
        if parameters:
            entry["parameters"] = parameters
        if op.body is not None:
            entry["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": keys[(op.body, "validation")]}},
            }
        if op.auth:
            entry["security"] = [{"bearerAuth": []}, {"apiKey": []}]
            if op.roles:
                entry["x-required-roles"] = list(op.roles)
        else:
            entry["security"] = []
        paths.setdefault(path, {})[method] = entry

    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
    }


#: Paths outside `/v{n}/` that every version's document lists.
COMMON_PATHS: Final = ("/livez", "/readyz", "/versions")


def api_versions() -> dict[int, str]:
    """Major number -> `MAJOR.MINOR` of every API version the code serves."""
    versions: dict[int, str] = current_app.extensions["api_versions"]
    return versions


def openapi_text(major: int) -> str:
    """The OpenAPI document of one major version of the current app, as JSON text."""
    versions = api_versions()
    if major not in versions:
        raise NotFound(f"No API version v{major}.")
    # Routes are fixed once the app is built, so each document is rendered once.
    cached: dict[int, str] = current_app.extensions.setdefault("openapi_cache", {})
    if major not in cached:
        spec = build_spec(
            current_app,
            version=versions[major],
            path_prefixes=(f"/v{major}/", *COMMON_PATHS),
            title=f"Structured API v{major}",
            description=(
                "Every response uses the envelope `{success, message, data, error, warnings, "
                "meta}`; errors carry a code from the `ErrorCode` catalogue."
            ),
        )
        cached[major] = dumps(spec)
    return cached[major]


def openapi_document(major: int) -> dict[str, Any]:
    """The OpenAPI document of one major version as a dict (for tests and tools)."""
    loaded: dict[str, Any] = json.loads(openapi_text(major))
    return loaded
