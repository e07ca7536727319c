"""skaffold.yaml against skaffold's schema, with and without each profile's patches.

tests/chart/fixtures/skaffold-v4beta11.json is skaffold's published JSON Schema for
`apiVersion: skaffold/v4beta11` (GoogleContainerTools/skaffold,
docs-v2/content/en/schemas/v4beta11.json, Apache-2.0). No registry this machine reaches
serves the skaffold binary, so `skaffold diagnose` cannot check the file; the schema can.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import jsonpatch
import pytest
import yaml
from jsonschema import Draft7Validator, ValidationError

from tests.chart.conftest import ROOT

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "skaffold-v4beta11.json").read_text())
SKAFFOLD: dict[str, Any] = yaml.safe_load((ROOT / "skaffold.yaml").read_text())
PROFILES = [p["name"] for p in SKAFFOLD["profiles"]]


def leaves(error: ValidationError) -> list[ValidationError]:
    """The deepest errors under an anyOf/oneOf (the schema wraps everything in one)."""
    if not error.context:
        return [error]
    deepest = max(len(e.absolute_path) for e in error.context)
    return [leaf for e in error.context if len(e.absolute_path) == deepest for leaf in leaves(e)]


def errors(document: dict[str, Any]) -> list[str]:
    """Schema violations as `path: message` lines."""
    found = Draft7Validator(SCHEMA).iter_errors(document)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for f in found for e in leaves(f)]


def with_profile(name: str) -> dict[str, Any]:
    """The config a profile makes: its patches applied, its sections laid over the base."""
    (profile,) = [p for p in SKAFFOLD["profiles"] if p["name"] == name]
    base = {k: v for k, v in SKAFFOLD.items() if k != "profiles"}
    patched: dict[str, Any] = jsonpatch.apply_patch(base, profile.get("patches", []))
    for section in ("build", "deploy", "test", "manifests"):
        for key, value in profile.get(section, {}).items():
            patched.setdefault(section, {})[key] = copy.deepcopy(value)
    return patched


def test_the_schema_fixture_is_skaffolds_v4beta11() -> None:
    assert SKAFFOLD["apiVersion"] == "skaffold/v4beta11"
    assert SCHEMA["$schema"] == "http://json-schema.org/draft-07/schema#"
    assert "SkaffoldConfig" in SCHEMA["definitions"]
    Draft7Validator.check_schema(SCHEMA)


def test_skaffold_yaml_is_valid() -> None:
    assert errors(SKAFFOLD) == []


def test_the_schema_catches_a_misspelt_field() -> None:
    broken = copy.deepcopy(SKAFFOLD)
    broken["deploy"]["helm"]["releases"][0]["chartPth"] = "charts/structured-api"

    assert any("chartPth" in e for e in errors(broken))


@pytest.mark.parametrize("profile", PROFILES)
def test_every_profile_yields_a_valid_config(profile: str) -> None:
    assert errors(with_profile(profile)) == []


def test_devcluster_builds_with_the_projects_script_instead_of_docker() -> None:
    (artifact,) = with_profile("devcluster")["build"]["artifacts"]

    assert "docker" not in artifact
    command = ROOT / artifact["custom"]["buildCommand"]
    assert command.is_file() and os.access(command, os.X_OK)
    assert (
        ROOT / artifact["context"] / artifact["custom"]["dependencies"]["dockerfile"]["path"]
    ).is_file()
    # No registry here: the build imports into containerd instead of pushing.
    assert with_profile("devcluster")["build"]["local"]["push"] is False


def test_devcluster_installs_the_dependencies_first_and_waits_for_them() -> None:
    devdeps, ours = with_profile("devcluster")["deploy"]["helm"]["releases"]

    assert (ROOT / devdeps["chartPath"] / "Chart.yaml").is_file()
    assert devdeps["wait"] is True
    assert devdeps["namespace"] == ours["namespace"]
    assert ours["chartPath"] == "charts/structured-api"
    assert ours["valuesFiles"] == ["charts/structured-api/ci/devcluster-values.yaml"]
    # Imported by tag: an image id is not a registry digest containerd could resolve.
    assert ours["setValueTemplates"]["image.tag"] == "{{.IMAGE_TAG_structured_api}}"


def test_devcluster_release_name_gives_the_secret_the_app_values_name() -> None:
    devdeps = with_profile("devcluster")["deploy"]["helm"]["releases"][0]
    values = yaml.safe_load((ROOT / "charts/structured-api/ci/devcluster-values.yaml").read_text())

    # The devdeps chart names its Secret <fullname>-urls; fullname is the release name when
    # the release name contains the chart name.
    assert devdeps["name"] == "structured-api-devdeps"
    assert values["database"]["existingSecret"] == f"{devdeps['name']}-urls"
    assert values["redis"]["existingSecret"] == f"{devdeps['name']}-urls"
