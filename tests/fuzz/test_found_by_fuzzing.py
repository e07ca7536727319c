"""Each bug the fuzzer found, pinned by the request that found it (all were 500s or
responses the document did not allow)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask.testing import FlaskClient

pytestmark = [pytest.mark.fuzz]

#: Python accepts zone offsets up to +-23:59, PostgreSQL only up to +-15:59.
FAR_OFFSET = "8796-12-12T03:15:25-17:22"


@pytest.mark.parametrize(
    ("path", "role"),
    [("/v1/notes", "user"), ("/v1/admin/users", "admin"), ("/v1/admin/dead-letters", "admin")],
)
def test_an_offset_past_postgres_bigint_is_a_422_not_a_500(
    path: str, role: str, client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = client.get(f"{path}?offset=36893488147419103232", headers=headers_for(role))
    assert response.status_code == 422
    assert response.json["error"]["errors"][0]["field"] == "offset"


@pytest.mark.parametrize(
    ("path", "role"),
    [
        (f"/v1/admin/audit?until={FAR_OFFSET}", "admin"),
        (f"/v1/admin/audit?since={FAR_OFFSET}", "admin"),
        (f"/v1/ai/history?until={FAR_OFFSET}", "user"),
        (f"/v1/ai/history?since={FAR_OFFSET}", "user"),
    ],
)
def test_a_timestamp_filter_with_a_far_zone_offset_is_answered(
    path: str, role: str, client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = client.get(path.replace("+", "%2B"), headers=headers_for(role))
    assert response.status_code == 200, response.json


def test_a_timestamp_that_overflows_once_in_utc_is_a_422(
    client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = client.get(
        "/v1/admin/audit?until=9999-12-31T23:00:00-12:00", headers=headers_for("admin")
    )
    assert response.status_code == 422


@pytest.mark.parametrize("kind", ["api-versions", "rate-limit-policies", "ai-providers"])
def test_a_put_that_creates_answers_201_and_the_document_says_so(
    kind: str, client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    operation = client.get("/v1/openapi.json").json["paths"][f"/v1/admin/{kind}/{{name}}"]["put"]
    assert {"200", "201"} <= operation["responses"].keys()
    assert operation["responses"]["201"] == operation["responses"]["200"]


@pytest.mark.parametrize(
    ("path", "role"),
    [
        ("/v1/admin/dead-letters?task_name=a%00b", "admin"),
        ("/v1/admin/users?email=a%00b", "admin"),
        ("/v1/admin/audit?actor=a%00b", "admin"),
        ("/v1/ai/history?model=a%00b", "user"),
    ],
)
def test_a_nul_character_in_a_query_filter_is_a_422(
    path: str, role: str, client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = client.get(path, headers=headers_for(role))
    assert response.status_code == 422
    assert response.json["error"]["errors"][0]["type"] == "string_nul"


@pytest.mark.parametrize(
    "body",
    [{"title": "a\u0000b"}, {"title": "ok", "body": "\u0000"}, {"title\u0000": "x"}],
    ids=["value", "second-field", "key"],
)
def test_a_nul_character_in_a_body_is_a_422_not_a_500_at_insert(
    body: dict[str, str], client: FlaskClient, headers_for: Callable[[str], dict[str, str]]
) -> None:
    response = client.post("/v1/notes", json=body, headers=headers_for("user"))
    assert response.status_code == 422
    assert {e["type"] for e in response.json["error"]["errors"]} == {"string_nul"}


def test_a_login_with_a_nul_in_the_email_is_a_422(client: FlaskClient) -> None:
    # Found by FUZZ_MAX_EXAMPLES=60: the email went to a PostgreSQL lookup as it was.
    response = client.post(
        "/v1/auth/login", json={"email": "\u001b\u0000T2@example.com", "password": "x" * 12}
    )
    assert response.status_code == 422
    assert response.json["error"]["errors"][0]["type"] == "string_nul"
