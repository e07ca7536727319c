"""The CRDs, RBAC and docs/crds.md are generated from the models and never drift."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from gen_crds import CRD_DIRS, expected_files
from pydantic import BaseModel

from sapi_operator.crd import crd_manifest
from sapi_operator.crd_docs import crds_markdown, load_example
from sapi_operator.resources import CATEGORY, GROUP, RESOURCES, VERSION, Kind
from sapi_operator.status import KIND_CONDITIONS, REASONS

_IDS = [r.kind for r in RESOURCES]


def _nodes(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(node, dict):
        yield path, node
        for key, value in node.get("properties", {}).items():
            yield from _nodes(value, f"{path}.{key}")
        if "items" in node:
            yield from _nodes(node["items"], f"{path}[]")


def _schema(resource: Kind) -> dict[str, Any]:
    schema: dict[str, Any] = crd_manifest(resource)["spec"]["versions"][0]["schema"]
    return schema["openAPIV3Schema"]


@pytest.mark.parametrize("path", sorted(expected_files(), key=str), ids=str)
def test_generated_file_matches_its_source(path: Any) -> None:
    expected = expected_files()[path]
    assert path.exists(), f"{path} missing: run `uv run python scripts/gen_crds.py`"
    assert path.read_text(encoding="utf-8") == expected, (
        f"{path} drifted from its source: run `uv run python scripts/gen_crds.py`"
    )


def test_chart_and_operator_ship_identical_crds() -> None:
    operator_dir, chart_dir = CRD_DIRS
    names = sorted(p.name for p in operator_dir.glob("*.yaml"))
    assert names == sorted(p.name for p in chart_dir.glob("*.yaml"))
    for name in names:
        assert (operator_dir / name).read_bytes() == (chart_dir / name).read_bytes()


@pytest.mark.parametrize("resource", RESOURCES, ids=_IDS)
def test_schema_is_structural(resource: Kind) -> None:
    for path, node in _nodes(_schema(resource)):
        assert "type" in node, f"{path} has no type"
        for forbidden in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "title"):
            assert forbidden not in node, f"{path} carries {forbidden}"
        assert node.get("additionalProperties") is not False, path
        if node["type"] == "object" and path not in (".metadata", ".status"):
            assert "properties" in node, f"{path} is an object without properties"


@pytest.mark.parametrize("resource", RESOURCES, ids=_IDS)
def test_crd_has_status_subresource_short_names_category_and_ready_column(
    resource: Kind,
) -> None:
    manifest = crd_manifest(resource)
    names, version = manifest["spec"]["names"], manifest["spec"]["versions"][0]
    assert manifest["spec"]["group"] == GROUP and version["name"] == VERSION
    assert names["categories"] == [CATEGORY] and names["shortNames"]
    assert version["subresources"] == {"status": {}}
    paths = [c["jsonPath"] for c in version["additionalPrinterColumns"]]
    assert '.status.conditions[?(@.type=="Ready")].status' in paths


@pytest.mark.parametrize("resource", RESOURCES, ids=_IDS)
def test_status_schema_has_observed_generation_and_map_keyed_conditions(resource: Kind) -> None:
    status = _schema(resource)["properties"]["status"]["properties"]
    assert status["observedGeneration"]["type"] == "integer"
    conditions = status["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason", "message"}


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("ApiVersion", {"requestsLastHour", "topCallers"}),
        ("RateLimitPolicy", {"shadowRejectsLastHour"}),
        ("AIProvider", {"credentialVersion", "lastSyncedAt"}),
    ],
)
def test_status_schema_carries_the_kind_specific_fields(kind: str, fields: set[str]) -> None:
    resource = next(r for r in RESOURCES if r.kind == kind)
    assert fields <= set(_schema(resource)["properties"]["status"]["properties"])


@pytest.mark.parametrize(
    ("kind", "path", "default"),
    [
        ("ApiVersion", ("phase",), "Supported"),
        ("ApiVersion", ("afterSunset",), "Gone"),
        ("RateLimitPolicy", ("mode",), "Enforce"),
        ("RateLimitPolicy", ("failureMode",), "Open"),
        ("RateLimitPolicy", ("rules", "key"), "user"),
        ("AIProvider", ("timeoutSeconds",), 30),
        ("AIProvider", ("credentialsSecretRef", "key"), "apiKey"),
    ],
)
def test_defaults_come_from_the_spec_models(kind: str, path: tuple[str, ...], default: Any) -> None:
    resource = next(r for r in RESOURCES if r.kind == kind)
    node = _schema(resource)["properties"]["spec"]
    for part in path:
        node = node["properties"][part]
        node = node.get("items", node)
    assert node["default"] == default


@pytest.mark.parametrize("resource", RESOURCES, ids=_IDS)
def test_worked_example_is_a_valid_spec(resource: Kind) -> None:
    example = load_example(resource)
    assert example["kind"] == resource.kind
    assert isinstance(resource.spec_model.model_validate(example["spec"]), BaseModel)


def test_docs_name_every_reason_of_every_condition() -> None:
    page = crds_markdown()
    for reason in REASONS:
        assert f"`{reason.name}`" in page
    for conditions in KIND_CONDITIONS.values():
        for condition in conditions:
            assert f"`{condition}`" in page
