"""Version lifecycle in the request pipeline: headers, warnings, 410s, unknown versions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from flask.testing import FlaskClient

from app.versioning.lifecycle import http_date, structured_date
from tests.versioning.conftest import Declare, Headers

NOW = datetime.now(UTC).replace(microsecond=0)
LONG_AGO = NOW - timedelta(days=60)
SOON = NOW + timedelta(days=90)


@pytest.fixture
def me(bearer_for: Headers) -> dict[str, str]:
    """A signed-in user: the notes example these tests call needs one."""
    return bearer_for("user")


def codes(response: object) -> list[str]:
    """Warning codes of an envelope."""
    return [w["code"] for w in response.get_json()["warnings"]]  # type: ignore[attr-defined]


@pytest.mark.parametrize(("path", "version"), [("/v1/notes", "1.0"), ("/v2/notes", "2.0")])
def test_every_versioned_response_names_its_version(
    client: FlaskClient, me: dict[str, str], path: str, version: str
) -> None:
    for response in (client.get(path, headers=me), client.get(path + "/not-a-note")):
        assert response.headers["API-Version"] == version
        assert response.get_json()["meta"]["api_version"] == version
        assert "Deprecation" not in response.headers and codes(response) == []


def test_unversioned_paths_carry_no_version(client: FlaskClient) -> None:
    response = client.get("/livez")
    assert "API-Version" not in response.headers
    assert response.get_json()["meta"]["api_version"] is None


def test_a_deprecated_version_warns_and_points_at_its_successor(
    client: FlaskClient, declare: Declare, me: dict[str, str]
) -> None:
    declare(
        "v1",
        version="1.0",
        phase="Deprecated",
        deprecatedAt=LONG_AGO.isoformat(),
        sunsetAt=SOON.isoformat(),
        successor="2.0",
        links={"deprecation": "https://example.com/v1-deprecated"},
    )
    response = client.get("/v1/notes", headers=me)
    assert response.status_code == 200
    assert response.headers["Deprecation"] == structured_date(LONG_AGO)
    assert response.headers["Sunset"] == http_date(SOON)
    links = response.headers.getlist("Link")
    assert '</v2/notes>; rel="successor-version"' in links
    assert '<https://example.com/v1-deprecated>; rel="deprecation"; type="text/html"' in links
    warning = response.get_json()["warnings"][0]
    assert warning["code"] == "VERSION_DEPRECATED" and warning["level"] == "WARN"
    assert warning["context"]["successor"] == "2.0"
    assert warning["context"]["changelog"] == "/versions/1.0/changes-to/2.0"
    # A carried-over operation's successor is the same operation under /v2 ...
    one = client.patch(
        "/v1/notes/00000000-0000-0000-0000-000000000000", json={"title": "x"}, headers=me
    )
    assert (
        '</v2/notes/00000000-0000-0000-0000-000000000000>; rel="successor-version"'
        in one.headers.getlist("Link")
    )
    # ... and where v2 has no such operation (none is removed: a 405 stands in), its document.
    missing = client.put("/v1/notes/00000000-0000-0000-0000-000000000000", headers=me)
    assert '</v2/openapi.json>; rel="successor-version"' in missing.headers.getlist("Link")
    assert client.get("/v2/notes").headers.get("Deprecation") is None


@pytest.mark.parametrize(
    "spec",
    [
        {"phase": "Retired", "successor": "2.0"},
        {
            "deprecatedAt": LONG_AGO.isoformat(),
            "sunsetAt": (NOW - timedelta(days=1)).isoformat(),
            "successor": "2.0",
        },
    ],
    ids=["phase-retired", "past-sunset"],
)
def test_a_retired_version_answers_410_but_keeps_its_document(
    client: FlaskClient, declare: Declare, me: dict[str, str], spec: dict[str, str]
) -> None:
    declare("v1", version="1.0", **spec)
    response = client.get("/v1/notes", headers=me)
    assert response.status_code == 410
    body = response.get_json()
    assert body["error"]["code"] == "VERSION_RETIRED"
    assert body["error"]["details"]["successor"] == "2.0"
    assert response.headers["API-Version"] == "1.0"
    assert client.get("/v1/openapi.json").status_code == 200
    assert client.get("/v2/notes", headers=me).status_code == 200


def test_after_sunset_serve_keeps_answering_with_the_sunset_header(
    client: FlaskClient, declare: Declare, me: dict[str, str]
) -> None:
    sunset = NOW - timedelta(days=1)
    declare("v1", version="1.0", sunsetAt=sunset.isoformat(), afterSunset="Serve")
    response = client.get("/v1/notes", headers=me)
    assert response.status_code == 200 and response.headers["Sunset"] == http_date(sunset)


def test_a_brownout_window_answers_410_with_retry_after_and_ends(
    client: FlaskClient, declare: Declare, me: dict[str, str]
) -> None:
    now = datetime.now(UTC)  # not the import-time NOW: the window is minutes wide
    declare(
        "v1",
        version="1.0",
        brownouts=[{"start": (now - timedelta(minutes=5)).isoformat(), "duration": "1h"}],
    )
    response = client.get("/v1/notes", headers=me)
    assert response.status_code == 410
    assert response.get_json()["error"]["code"] == "VERSION_BROWNOUT"
    assert 3000 <= int(response.headers["Retry-After"]) <= 3300
    declare(
        "v1",
        version="1.0",
        brownouts=[{"start": (now - timedelta(hours=2)).isoformat(), "duration": "1h"}],
    )
    assert client.get("/v1/notes", headers=me).status_code == 200


def test_login_and_admin_stay_reachable_on_a_retired_version(
    client: FlaskClient, declare: Declare
) -> None:
    declare("v1", version="1.0", phase="Retired")
    admin = client.get("/v1/admin/config")
    assert admin.status_code == 401  # refused for lack of credentials, not 410
    assert admin.headers["API-Version"] == "1.0"
    assert client.post("/v1/auth/login", json={}).status_code == 422


def test_an_unknown_version_is_404_version_unknown(client: FlaskClient) -> None:
    response = client.get("/v9/notes")
    assert response.status_code == 404
    error = response.get_json()["error"]
    assert error["code"] == "VERSION_UNKNOWN" and error["details"]["served"] == ["1.0", "2.0"]
