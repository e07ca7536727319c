"""`flask ...` commands of the core: readiness check, config snapshot, OpenAPI dump."""

from __future__ import annotations

import json

from flask import Flask


def test_flask_check_reports_every_dependency_ready(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["check"])
    assert result.exit_code == 0, result.output
    names = {json.loads(line)["name"] for line in result.output.splitlines()}
    assert {"postgresql", "redis", "config"} <= names


def test_flask_config_show_prints_the_snapshot_as_json(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["config", "show"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert isinstance(shown["generation"], int)
    assert set(shown) == {"generation", "objects", "invalid"}


def test_flask_routes_openapi_prints_the_document(app: Flask) -> None:
    result = app.test_cli_runner().invoke(args=["routes-openapi", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["openapi"] == "3.1.0"
