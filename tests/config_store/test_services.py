"""`app.config_store.service`: validation, ownership, generation, audit and the announcement."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from sqlmodel import Session, select

from app.config_store import service, validation
from app.config_store.audit import list_audit
from app.config_store.channel import CHANNEL
from app.config_store.models import ConfigAudit, ConfigObject
from app.core.errors import Conflict, NotFound, ValidationFailed
from tests.config_store.conftest import SPECS

ADMIN = service.Source.admin()
CR = service.Source.operator(namespace="prod", uid="uid-1")


def put(session: Session, kind: str = "RateLimitPolicy", name: str = "p", **kw: Any) -> Any:
    """Upsert with defaults for the arguments a test does not care about."""
    kw.setdefault("spec", SPECS[kind])
    kw.setdefault("source", ADMIN)
    kw.setdefault("actor", "user:test")
    return service.upsert_config(session=session, kind=kind, name=name, **kw)


def audit_rows(session: Session, name: str) -> list[ConfigAudit]:
    """Audit rows of one object, oldest first."""
    statement = select(ConfigAudit).where(ConfigAudit.name == name).order_by(ConfigAudit.id)  # type: ignore[arg-type]
    return list(session.exec(statement))


@pytest.mark.parametrize("kind", sorted(SPECS))
def test_create_stores_the_normalised_spec_and_bumps_the_generation(
    session: Session, kind: str
) -> None:
    before = service.current_generation(session=session)
    change = put(session, kind)
    assert change.action == "create"
    assert change.generation == before + 1 == service.current_generation(session=session)
    row = change.row
    assert row.generation == change.generation and row.source == "admin"
    # Defaults are filled in, unset optionals left out (what the CRD's defaulting does).
    assert row.spec == validation.normalised(validation.validate_spec(kind, SPECS[kind]))
    assert row.status["observedGeneration"] == change.generation
    assert row.status["conditions"][0]["type"] == "Ready"


def test_every_change_writes_one_audit_row_with_before_and_after(session: Session) -> None:
    created = put(session, name="audited")
    changed_spec = {**SPECS["RateLimitPolicy"], "mode": "Shadow"}
    updated = put(session, name="audited", spec=changed_spec, actor="user:other")
    deleted = service.delete_config(
        session=session, kind="RateLimitPolicy", name="audited", source=ADMIN, actor="user:x"
    )
    rows = audit_rows(session, "audited")
    assert [r.action for r in rows] == ["create", "update", "delete"]
    assert [r.generation for r in rows] == [
        created.generation,
        updated.generation,
        deleted.generation,
    ]
    assert [r.actor for r in rows] == ["user:test", "user:other", "user:x"]
    assert rows[0].before is None and rows[0].after["spec"]["mode"] == "Enforce"
    assert rows[1].before["spec"]["mode"] == "Enforce" and rows[1].after["spec"]["mode"] == "Shadow"
    assert rows[2].before["spec"]["mode"] == "Shadow" and rows[2].after is None
    assert all(r.source == "admin" and r.kind == "RateLimitPolicy" for r in rows)


def test_writing_the_same_spec_again_changes_nothing(session: Session) -> None:
    first = put(session, name="same")
    again = put(session, name="same")
    assert again.action == "unchanged" and again.generation == first.generation
    assert service.current_generation(session=session) == first.generation
    assert len(audit_rows(session, "same")) == 1


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("RateLimitPolicy", {"rules": []}, "spec.rules"),
        (
            "RateLimitPolicy",
            {"rules": [{"name": "r", "limits": [{"requests": 1, "window": "5 minutes"}]}]},
            "spec.rules.0.limits.0.window",
        ),
        (
            "RateLimitPolicy",
            {"rules": [{"name": "r", "limits": [{"requests": 1, "tokens": 5, "window": "1m"}]}]},
            "spec.rules.0.limits.0",
        ),
        ("RateLimitPolicy", {"rules": [], "colour": "red"}, "spec.colour"),
        ("ApiVersion", {"version": "one"}, "spec.version"),
        (
            "ApiVersion",
            {
                "version": "1.0",
                "deprecatedAt": "2027-01-01T00:00:00Z",
                "sunsetAt": "2026-01-01T00:00:00Z",
            },
            "spec",
        ),
        ("AIProvider", {"type": "OpenAI", "models": [{"name": "m"}]}, "spec"),
        ("AIProvider", {"type": "Echo", "models": []}, "spec.models"),
    ],
)
def test_invalid_specs_are_refused_with_field_paths(
    session: Session, kind: str, spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(ValidationFailed) as caught:
        put(session, kind, spec=spec)
    assert field in [e["field"] for e in caught.value.errors]
    assert session.exec(select(ConfigObject).where(ConfigObject.name == "p")).first() is None


@pytest.mark.parametrize("name", ["Upper", "-dash", "under_score", "x" * 64, ""])
def test_names_must_be_rfc_1123_labels(session: Session, name: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        put(session, name=name)
    assert caught.value.errors[0]["field"] == "name"


@pytest.mark.parametrize(
    ("owner", "writer"),
    [
        (CR, ADMIN),
        (ADMIN, CR),
        (CR, service.Source.operator(namespace="staging", uid="uid-2")),
    ],
    ids=["admin-on-cr-row", "operator-on-admin-row", "operator-from-other-namespace"],
)
def test_a_row_owned_by_another_source_cannot_be_changed_or_deleted(
    session: Session, owner: service.Source, writer: service.Source
) -> None:
    put(session, name="owned", source=owner)
    generation = service.current_generation(session=session)
    with pytest.raises(Conflict) as caught:
        put(session, name="owned", source=writer, spec={**SPECS["RateLimitPolicy"], "priority": 1})
    assert caught.value.details["owner"]["type"] == owner.type
    with pytest.raises(Conflict):
        service.delete_config(
            session=session, kind="RateLimitPolicy", name="owned", source=writer, actor="x"
        )
    assert service.current_generation(session=session) == generation
    assert len(audit_rows(session, "owned")) == 1


def test_a_recreated_custom_resource_takes_its_row_over(session: Session) -> None:
    put(session, name="cr", source=CR)
    recreated = service.Source.operator(namespace="prod", uid="uid-new")
    change = put(session, name="cr", source=recreated)
    assert change.action == "update" and change.row.source_uid == "uid-new"
    assert audit_rows(session, "cr")[-1].after["source"]["uid"] == "uid-new"


def test_two_api_versions_cannot_describe_the_same_major(session: Session) -> None:
    put(session, "ApiVersion", name="v1", spec={"version": "1.0"})
    with pytest.raises(Conflict) as caught:
        put(session, "ApiVersion", name="v1-again", spec={"version": "1.1"})
    assert caught.value.details["name"] == "v1"
    assert put(session, "ApiVersion", name="v1", spec={"version": "1.1"}).action == "update"


def test_deleting_a_missing_object_is_not_found(session: Session) -> None:
    with pytest.raises(NotFound):
        service.delete_config(
            session=session, kind="AIProvider", name="nope", source=ADMIN, actor="x"
        )


def test_status_updates_are_not_config_changes(session: Session) -> None:
    change = put(session, name="observed")
    row = service.update_status(
        session=session,
        kind="RateLimitPolicy",
        name="observed",
        status={"shadowRejectsLastHour": 3},
    )
    assert row.status["shadowRejectsLastHour"] == 3 and row.status["observedGeneration"]
    assert service.current_generation(session=session) == change.generation
    assert len(audit_rows(session, "observed")) == 1


def test_credentials_are_audited_by_version_only(session: Session) -> None:
    change = put(
        session,
        "AIProvider",
        name="vault",
        source=CR,
        credential=service.Credential(ciphertext="gAAAA-ciphertext", version="sha256:abc"),
    )
    assert change.row.credential_ciphertext == "gAAAA-ciphertext"
    after = audit_rows(session, "vault")[0].after
    assert after["credentialVersion"] == "sha256:abc" and "gAAAA" not in str(after)


def test_a_change_is_announced_on_redis_after_commit(session: Session, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(CHANNEL)
    try:
        change = put(session, name="announced", redis_client=client)
        deadline, message = time.monotonic() + 2, None
        while message is None and time.monotonic() < deadline:
            message = pubsub.get_message(timeout=0.1)
        assert change.announced
        assert message is not None and int(message["data"]) == change.generation
    finally:
        pubsub.close()


def test_audit_listing_filters_and_pages_newest_first(session: Session) -> None:
    for i in range(5):
        put(session, name=f"a{i}")
    put(session, "AIProvider", name="a0")
    rows, cursor = list_audit(session=session, limit=2, kind="RateLimitPolicy")
    assert [r.name for r in rows] == ["a4", "a3"] and cursor is not None
    rest, _ = list_audit(session=session, limit=10, kind="RateLimitPolicy", before=cursor)
    assert [r.name for r in rest][:3] == ["a2", "a1", "a0"]
    only, _ = list_audit(session=session, limit=10, kind="AIProvider", action="create")
    # Newest first; rows committed by real-process tests that ran earlier may follow.
    assert [(r.kind, r.name) for r in only][:1] == [("AIProvider", "a0")]
    assert {(r.kind, r.action) for r in only} == {("AIProvider", "create")}


def provider(base_url: str) -> dict[str, Any]:
    """An AIProvider spec with a Secret reference, at `base_url`."""
    return {
        "type": "OpenAICompatible",
        "baseURL": base_url,
        "credentialsSecretRef": {"name": "llm-key"},
        "models": [{"name": "m"}],
    }


def test_a_stored_key_never_follows_a_changed_origin_whoever_writes(session: Session) -> None:
    # The operator path: its handler passes credential=None when the Secret could not be
    # read (kept key). With a new origin in the same write, the old key must not survive.
    key = service.Credential(ciphertext="gAAAA-old", version="v-old")
    put(session, "AIProvider", "llm", spec=provider("https://api.one.example/v1"), source=CR,
        credential=key)  # fmt: skip

    moved = put(session, "AIProvider", "llm", spec=provider("https://api.two.example/v1"),
                source=CR)  # fmt: skip

    assert moved.credential_cleared
    assert moved.row.credential_ciphertext is None and moved.row.credential_version is None
    # Re-read for the new spec in the same write (the normal operator path): stored as given.
    new = service.Credential(ciphertext="gAAAA-new", version="v-new")
    again = put(session, "AIProvider", "llm", spec=provider("https://api.three.example/v1"),
                source=CR, credential=new)  # fmt: skip
    assert not again.credential_cleared and again.row.credential_version == "v-new"
    # Path, priority and other fields on the same origin keep the key.
    same = put(
        session, "AIProvider", "llm", source=CR,
        spec={**provider("https://API.three.example:443/v2"), "priority": 3},
    )  # fmt: skip
    assert not same.credential_cleared and same.row.credential_version == "v-new"


def test_the_http_allow_list_is_applied_only_when_the_writer_passes_it(session: Session) -> None:
    with pytest.raises(ValidationFailed) as caught:
        put(session, "AIProvider", "plain", spec=provider("http://10.0.0.9/v1"),
            allowed_http_hosts=["127.0.0.1"])  # fmt: skip
    assert [e["field"] for e in caught.value.errors] == ["spec.baseURL"]
    assert put(session, "AIProvider", "plain", spec=provider("http://10.0.0.9/v1"),
               allowed_http_hosts=["10.0.0.9"]).action == "create"  # fmt: skip
