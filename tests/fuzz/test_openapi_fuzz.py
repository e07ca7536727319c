"""Schemathesis against /v1/openapi.json and /v2/openapi.json, as each role.

Every generated request (valid and invalid, by the documented schemas) must get an answer
the document allows: a documented status, content type, headers and body schema, and never
a 5xx. No stateful run: the documents declare no OpenAPI links, and schemathesis' own
dependency inference finds none to follow (docs/chaos-and-fuzzing.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from flask import Flask

from tests.fuzz.conftest import ROLES, max_examples
from tests.fuzz.runner import CONFIG, fuzz_operations

pytestmark = [pytest.mark.fuzz, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture
def documents(app: Flask) -> dict[str, Any]:
    """The live OpenAPI documents of this app, loaded by schemathesis."""
    return {
        v: schemathesis.openapi.from_wsgi(f"/{v}/openapi.json", app, config=CONFIG)
        for v in ("v1", "v2")
    }


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("version", ["v1", "v2"])
def test_every_operation_answers_each_role_as_documented(
    version: str, role: str, documents: dict[str, Any], headers_for: Callable[[str], dict[str, str]]
) -> None:
    failures = fuzz_operations(documents[version], headers_for(role), max_examples())
    assert not failures, "\n\n".join(f"{label}:\n{why}" for label, why in failures.items())
