"""Pure reconcile logic: spec in, desired row and status out (no cluster, no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from sapi_operator.reconcile import (
    CredentialCheck,
    Desired,
    ObjectRef,
    Outcome,
    applied,
    build_status,
    conflict,
    desired_state,
    is_reconciled,
    store_unavailable,
)

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
POLICY = {"rules": [{"name": "r", "limits": [{"requests": 5, "window": "1m"}]}]}
PROVIDER = {"type": "Echo", "models": [{"name": "echo"}]}


def ref(kind: str = "RateLimitPolicy", generation: int = 3) -> ObjectRef:
    """A resource identity."""
    return ObjectRef(kind, "team-a", "free", "uid-1", generation)


def conditions(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Conditions by type."""
    return {c["type"]: c for c in status["conditions"]}


def test_valid_spec_gives_the_normalised_row_with_defaults() -> None:
    desired = desired_state(ref(), POLICY)
    assert isinstance(desired, Desired)
    assert desired.spec["mode"] == "Enforce" and desired.spec["rules"][0]["key"] == "user"
    assert "burst" not in desired.spec["rules"][0]["limits"][0]  # unset optionals stay out


@pytest.mark.parametrize(
    ("kind", "spec", "field"),
    [
        ("RateLimitPolicy", {"rules": []}, "spec.rules"),
        ("RateLimitPolicy", {"rules": [{"name": "r", "limits": [{"window": "1m"}]}]}, "limits.0"),
        ("ApiVersion", {"version": "1.0", "phase": "Sunsetting"}, "spec.phase"),
        (
            "ApiVersion",
            {
                "version": "1.0",
                "deprecatedAt": "2027-01-01T00:00:00Z",
                "sunsetAt": "2026-01-01T00:00:00Z",
            },
            "sunsetAt must not be before deprecatedAt",
        ),
        ("AIProvider", {"type": "OpenAI", "models": [{"name": "m"}]}, "baseURL is required"),
    ],
)
def test_invalid_spec_is_a_permanent_failure_naming_the_field(
    kind: str, spec: dict[str, Any], field: str
) -> None:
    outcome = desired_state(ref(kind), spec)
    assert isinstance(outcome, Outcome)
    assert outcome.permanent and outcome.reason == "InvalidSpec"
    assert field in outcome.message and "Nothing was stored" in outcome.message


@pytest.mark.parametrize(
    ("base_url", "allowed", "refused"),
    [
        ("http://127.0.0.1:9100/v1", ("127.0.0.1",), False),
        ("https://api.openai.com/v1", (), False),
        ("http://attacker.example/v1", ("127.0.0.1",), True),
        ("http://127.0.0.1:9100/v1", (), True),
    ],
)
def test_ai_provider_plain_http_off_the_allow_list_is_invalid_before_its_secret_is_read(
    base_url: str, allowed: tuple[str, ...], refused: bool
) -> None:
    spec = {
        "type": "OpenAICompatible",
        "baseURL": base_url,
        "credentialsSecretRef": {"name": "llm-key"},
        "models": [{"name": "m"}],
    }
    outcome = desired_state(ref("AIProvider"), spec, allowed_http_hosts=allowed)
    if not refused:
        assert isinstance(outcome, Desired)
        return
    assert isinstance(outcome, Outcome)
    assert outcome.permanent and outcome.reason == "InvalidSpec"
    assert "spec.baseURL" in outcome.message and "AI_ALLOWED_HTTP_HOSTS" in outcome.message


def test_applied_status_reports_generation_ready_and_enforced() -> None:
    desired = desired_state(ref(), POLICY)
    assert isinstance(desired, Desired)
    status = build_status(ref(), applied(42, changed=True), now=NOW, model=desired.model)
    conds = conditions(status)
    assert status["observedGeneration"] == 3 and status["configGeneration"] == 42
    assert conds["Ready"]["status"] == "True" and conds["Ready"]["reason"] == "Reconciled"
    assert conds["Enforced"]["reason"] == "Enforcing"
    assert all(c["observedGeneration"] == 3 for c in status["conditions"])


def test_shadow_policy_is_ready_but_not_enforced() -> None:
    desired = desired_state(ref(), {**POLICY, "mode": "Shadow"})
    assert isinstance(desired, Desired)
    status = build_status(ref(), applied(1, changed=False), now=NOW, model=desired.model)
    enforced = conditions(status)["Enforced"]
    assert enforced["status"] == "False" and enforced["reason"] == "ShadowMode"


def test_transition_time_moves_only_when_status_flips() -> None:
    earlier = (NOW - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    previous = [{"type": "Ready", "status": "True", "lastTransitionTime": earlier}]
    kept = build_status(ref(), applied(1, changed=False), now=NOW, previous=previous)
    flipped = build_status(ref(), store_unavailable("OperationalError"), now=NOW, previous=previous)
    assert conditions(kept)["Ready"]["lastTransitionTime"] == earlier
    assert conditions(flipped)["Ready"]["lastTransitionTime"] == "2026-11-26T12:00:00Z"


@pytest.mark.parametrize(
    ("owner", "details", "reason"),
    [
        ({"type": "admin"}, {}, "OwnedByAdminApi"),
        ({"type": "operator", "namespace": "team-b"}, {}, "OwnedByOtherNamespace"),
        ({}, {"name": "v1-other", "version": "1.1"}, "VersionConflict"),
    ],
)
def test_conflicts_are_retried_with_an_actionable_reason(
    owner: dict[str, Any], details: dict[str, Any], reason: str
) -> None:
    outcome = conflict(ref(), owner, details)
    assert outcome.reason == reason and not outcome.ready
    assert outcome.retry_after and not outcome.permanent


def test_store_outage_is_temporary() -> None:
    outcome = store_unavailable("OperationalError")
    assert outcome.retry_after and not outcome.permanent and "OperationalError" in outcome.message


def test_provider_without_usable_key_is_stored_but_not_ready() -> None:
    desired = desired_state(ref("AIProvider"), PROVIDER)
    assert isinstance(desired, Desired)
    check = CredentialCheck(False, "SecretNotFound", "Secret 'k' does not exist.")
    status = build_status(
        ref("AIProvider"), applied(7, changed=True), now=NOW, model=desired.model, credential=check
    )
    conds = conditions(status)
    assert conds["Ready"]["reason"] == "CredentialInvalid" and conds["Ready"]["status"] == "False"
    assert conds["CredentialValid"]["reason"] == "SecretNotFound"
    assert status["credentialVersion"] is None  # a merge patch removes the old version


def test_provider_with_key_reports_version_and_sync_time() -> None:
    check = CredentialCheck(True, "SecretResolved", "stored", plaintext="sk-1")
    status = build_status(
        ref("AIProvider"),
        applied(7, changed=True),
        now=NOW,
        credential=check,
        credential_version="abc123",
    )
    assert status["credentialVersion"] == "abc123"
    assert status["lastSyncedAt"] == "2026-11-26T12:00:00Z"
    assert "sk-1" not in repr(check) and "sk-1" not in str(status)


@pytest.mark.parametrize(
    ("status", "generation", "expected"),
    [
        ({"observedGeneration": 2, "conditions": [{"type": "Ready", "status": "True"}]}, 2, True),
        ({"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]}, 2, False),
        (
            {
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "False", "reason": "InvalidSpec"}],
            },
            2,
            False,
        ),
        (
            {
                "observedGeneration": 2,
                "conditions": [{"type": "Ready", "status": "False", "reason": "CredentialInvalid"}],
            },
            2,
            True,
        ),
        ({}, 1, False),
    ],
)
def test_only_resources_stored_at_their_current_generation_count_as_reconciled(
    status: dict[str, Any], generation: int, expected: bool
) -> None:
    body = {"metadata": {"generation": generation}, "status": status}
    assert is_reconciled(body) is expected
