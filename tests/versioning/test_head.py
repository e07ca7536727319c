"""HEAD runs the GET view, so the version lifecycle treats it exactly like GET."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask.testing import FlaskClient

from tests.versioning.conftest import Declare


def test_a_retired_version_refuses_head_like_get(client: FlaskClient, declare: Declare) -> None:
    declare("v1", version="1.0", phase="Retired", successor="2.0")

    head, get = client.head("/v1/limits/me"), client.get("/v1/limits/me")

    assert head.status_code == get.status_code == 410
    assert head.headers["API-Version"] == "1.0"


def test_a_deprecated_version_announces_itself_on_head(
    client: FlaskClient, declare: Declare
) -> None:
    deprecated_at = datetime.now(UTC) - timedelta(days=30)
    declare("v1", version="1.0", deprecatedAt=deprecated_at.isoformat(), successor="2.0")

    head = client.head("/v1/limits/me")

    assert head.headers["Deprecation"] == client.get("/v1/limits/me").headers["Deprecation"]
    assert '</v2/limits/me>; rel="successor-version"' in head.headers.getlist("Link")
