"""`/v1/admin/...` config endpoints over HTTP: CRUD, roles, 409 on CR rows, 422, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlmodel import Session

from app.config_store import service
from app.config_store.snapshot import Snapshot
from tests.config_store.conftest import COLLECTIONS, SPECS

KINDS = sorted(SPECS)
CR = service.Source.operator(namespace="prod", uid="5d1c")


def url(kind: str, name: str | None = None) -> str:
    """The collection (or object) URL of a kind."""
    base = f"/v1/admin/{COLLECTIONS[kind]}"
    return f"{base}/{name}" if name else base


@pytest.mark.parametrize("kind", KINDS)
def test_crud_round_trip_mirrors_the_custom_resource_shape(
    client: FlaskClient, admin: dict[str, str], kind: str
) -> None:
    created = client.put(url(kind, "one"), json={"name": "one", "spec": SPECS[kind]}, headers=admin)
    assert created.status_code == 201, created.get_json()
    assert created.headers["Location"] == url(kind, "one")
    data = created.get_json()["data"]
    assert {"name", "spec", "status", "source"} <= set(data)
    assert data["name"] == "one" and data["source"]["type"] == "admin"
    assert data["status"]["conditions"][0]["reason"] == "Accepted"

    fetched = client.get(url(kind, "one"), headers=admin).get_json()["data"]
    assert fetched["spec"] == data["spec"]
    listing = client.get(url(kind), headers=admin).get_json()["data"]
    assert [o["name"] for o in listing["data"]] == ["one"] and listing["count"] == 1

    replaced = client.put(url(kind, "one"), json={"spec": SPECS[kind]}, headers=admin)
    assert replaced.status_code == 200

    deleted = client.delete(url(kind, "one"), headers=admin)
    assert deleted.status_code == 200 and deleted.get_json()["data"]["deleted"] is True
    gone = client.get(url(kind, "one"), headers=admin)
    assert gone.status_code == 404 and gone.get_json()["error"]["code"] == "RES_NOT_FOUND"


ROUTES = [
    ("GET", url("RateLimitPolicy")),
    ("GET", url("RateLimitPolicy", "x")),
    ("PUT", url("RateLimitPolicy", "x")),
    ("DELETE", url("RateLimitPolicy", "x")),
    ("GET", url("ApiVersion")),
    ("PUT", url("ApiVersion", "x")),
    ("GET", url("AIProvider")),
    ("DELETE", url("AIProvider", "x")),
    ("GET", "/v1/admin/config"),
    ("GET", "/v1/admin/audit"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize(
    ("who", "status", "code"),
    [("anonymous", 401, "AUTH_REQUIRED"), ("user", 403, "AUTH_FORBIDDEN")],
)
def test_only_admins_reach_the_config_api(
    client: FlaskClient,
    request: pytest.FixtureRequest,
    method: str,
    path: str,
    who: str,
    status: int,
    code: str,
) -> None:
    headers = {} if who == "anonymous" else request.getfixturevalue("user")
    response = client.open(path, method=method, json={"spec": {}}, headers=headers)
    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code


@pytest.mark.parametrize(
    ("kind", "body", "fields"),
    [
        (
            "RateLimitPolicy",
            {"spec": {"rules": [{"name": "r", "limits": [{"requests": 0, "window": "1x"}]}]}},
            {"spec.rules.0.limits.0.requests", "spec.rules.0.limits.0.window"},
        ),
        (
            "RateLimitPolicy",
            {"spec": {"mode": "Sometimes", "rules": []}},
            {"spec.mode", "spec.rules"},
        ),
        (
            "ApiVersion",
            {"spec": {"version": "1.0", "brownouts": [{"start": "soon"}]}},
            {"spec.brownouts.0.start", "spec.brownouts.0.duration"},
        ),
        ("AIProvider", {"spec": {"type": "Echo", "models": [{"name": "m"}], "x": 1}}, {"spec.x"}),
        ("AIProvider", {"name": "n"}, {"spec"}),
        ("ApiVersion", {"name": "other", "spec": {"version": "1.0"}}, {"name"}),
    ],
)
def test_validation_errors_are_422_envelopes_with_field_paths(
    client: FlaskClient, admin: dict[str, str], kind: str, body: dict[str, Any], fields: set[str]
) -> None:
    response = client.put(url(kind, "n"), json=body, headers=admin)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "VAL_INVALID_FORMAT"
    assert fields <= {e["field"] for e in error["errors"]}


def test_cross_field_rules_match_the_crd_cel_rules(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    body = {
        "spec": {
            "version": "1.0",
            "deprecatedAt": "2027-02-01T00:00:00Z",
            "sunsetAt": "2027-01-01T00:00:00Z",
        }
    }
    response = client.put(url("ApiVersion", "v1"), json=body, headers=admin)
    assert response.status_code == 422
    assert "sunsetAt must not be before deprecatedAt" in str(response.get_json()["error"]["errors"])


@pytest.mark.parametrize("kind", KINDS)
def test_rows_owned_by_a_custom_resource_are_read_only(
    client: FlaskClient, admin: dict[str, str], session: Session, kind: str
) -> None:
    service.upsert_config(
        session=session, kind=kind, name="from-cr", spec=SPECS[kind], source=CR, actor="operator"
    )
    assert client.get(url(kind, "from-cr"), headers=admin).get_json()["data"]["source"] == {
        "type": "operator",
        "namespace": "prod",
        "uid": "5d1c",
    }
    for response in (
        client.put(url(kind, "from-cr"), json={"spec": SPECS[kind]}, headers=admin),
        client.delete(url(kind, "from-cr"), headers=admin),
    ):
        assert response.status_code == 409
        error = response.get_json()["error"]
        assert error["code"] == "RES_CONFLICT" and error["details"]["owner"]["namespace"] == "prod"
    assert (
        client.get(url(kind) + "?source=operator", headers=admin).get_json()["data"]["count"] == 1
    )


def test_every_admin_change_is_listed_in_the_audit_trail(
    client: FlaskClient, admin: dict[str, str]
) -> None:
    spec = SPECS["RateLimitPolicy"]
    client.put(url("RateLimitPolicy", "tracked"), json={"spec": spec}, headers=admin)
    client.put(
        url("RateLimitPolicy", "tracked"), json={"spec": {**spec, "priority": 7}}, headers=admin
    )
    client.delete(url("RateLimitPolicy", "tracked"), headers=admin)
    page = client.get("/v1/admin/audit?name=tracked&limit=2", headers=admin).get_json()["data"]
    assert [r["action"] for r in page["data"]] == ["delete", "update"]
    assert page["data"][1]["before"]["spec"]["priority"] == 100
    assert page["data"][1]["after"]["spec"]["priority"] == 7
    assert (
        page["data"][0]["actor"].startswith("user:")
        and page["data"][0]["source"]["type"] == "admin"
    )
    older = client.get(
        f"/v1/admin/audit?name=tracked&cursor={page['next_cursor']}", headers=admin
    ).get_json()["data"]
    assert [r["action"] for r in older["data"]] == ["create"] and older["next_cursor"] is None
    assert client.get("/v1/admin/audit?action=explode", headers=admin).status_code == 422


def test_config_endpoint_shows_the_snapshot_generation_and_redacts_credentials(
    client: FlaskClient,
    admin: dict[str, str],
    session: Session,
    refresh: Callable[[], Snapshot],
) -> None:
    client.put(
        url("RateLimitPolicy", "live"), json={"spec": SPECS["RateLimitPolicy"]}, headers=admin
    )
    service.upsert_config(
        session=session,
        kind="AIProvider",
        name="keyed",
        spec=SPECS["AIProvider"],
        source=CR,
        actor="operator",
        credential=service.Credential(ciphertext="gAAAA-very-secret", version="v7"),
    )
    snapshot = refresh()
    response = client.get("/v1/admin/config", headers=admin)
    body = response.get_data(as_text=True)
    data = response.get_json()["data"]
    assert data["generation"] == snapshot.generation and data["loaded"] is True
    assert isinstance(data["process"]["pid"], int)
    assert [p["name"] for p in data["objects"]["RateLimitPolicy"]] == ["live"]
    assert data["objects"]["AIProvider"][0]["credential"] == {"present": True, "version": "v7"}
    assert "gAAAA" not in body
