"""AIProvider keys: every way a Secret lookup can end, and what is stored."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from app.config_store.service import NO_CREDENTIAL
from app.core.crypto import keyring
from app.core.specs import AIProviderSpec
from app.settings import Settings
from sapi_operator.credentials import (
    OPT_IN_LABEL,
    OPT_IN_SELECTOR,
    SecretRead,
    check,
    is_protected,
    opted_in,
    stored_credential,
)

SPEC = AIProviderSpec.model_validate(
    {
        "type": "OpenAICompatible",
        "baseURL": "http://127.0.0.1:9/v1",
        "credentialsSecretRef": {"name": "llm-key", "key": "apiKey"},
        "models": [{"name": "m"}],
    }
)
RING = keyring(Settings(app_env="test", secret_key=SecretStr("k" * 48)))


def b64(text: str) -> str:
    """Secret data encoding."""
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    ("read", "reason", "retry"),
    [
        (SecretRead("missing"), "SecretNotFound", False),
        (SecretRead("forbidden"), "SecretForbidden", False),
        (SecretRead("error", detail="HTTP 500"), "SecretUnreadable", True),
        (SecretRead("found", {"other": b64("x")}), "SecretKeyMissing", False),
        (SecretRead("found", {"apiKey": b64("   ")}), "SecretKeyEmpty", False),
        (SecretRead("found", {"apiKey": "%%not-base64%%"}), "SecretKeyEmpty", False),
    ],
)
def test_unusable_secret_gives_a_false_condition_never_a_crash(
    read: SecretRead, reason: str, retry: bool
) -> None:
    result = check(SPEC, "team-a", read)
    assert not result.valid and result.reason == reason
    assert (result.retry_after is not None) is retry
    assert "llm-key" in result.message
    assert stored_credential(result, RING) is NO_CREDENTIAL


def test_missing_key_message_names_neither_the_other_keys_nor_their_values() -> None:
    # An AIProvider's status is readable by more people than the Secret: its other keys
    # (here a database URL next to the expected one) are not listed.
    data = {"DATABASE_URL": b64("postgresql://u:pw@db/app"), "token": b64("sk-secret")}
    result = check(SPEC, "team-a", SecretRead("found", data))
    assert result.reason == "SecretKeyMissing" and "apiKey" in result.message
    for leaked in ("DATABASE_URL", "token", "sk-secret", "postgresql"):
        assert leaked not in result.message


@pytest.mark.parametrize(
    ("read", "reason", "hint"),
    [
        (SecretRead("not-opted-in"), "SecretNotOptedIn", f"{OPT_IN_LABEL}=true"),
        (SecretRead("protected"), "SecretProtected", "OPERATOR_PROTECTED_SECRETS"),
    ],
)
def test_a_secret_the_operator_may_not_use_says_why_and_what_to_do(
    read: SecretRead, reason: str, hint: str
) -> None:
    result = check(SPEC, "team-a", read)
    assert not result.valid and result.reason == reason and result.retry_after is None
    assert "llm-key" in result.message and "team-a" in result.message and hint in result.message
    assert result.plaintext is None
    # Whatever key was stored before is removed, not kept.
    assert stored_credential(result, RING) is NO_CREDENTIAL


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ({OPT_IN_LABEL: "true"}, True),
        ({OPT_IN_LABEL: "True"}, False),
        ({OPT_IN_LABEL: "yes"}, False),
        ({"app.kubernetes.io/component": "app"}, False),
        ({}, False),
        (None, False),
    ],
)
def test_only_the_exact_opt_in_label_opts_in(labels: dict[str, str] | None, expected: bool) -> None:
    assert opted_in(labels) is expected
    assert f"{OPT_IN_LABEL}=true" == OPT_IN_SELECTOR


@pytest.mark.parametrize(
    ("namespace", "name", "protected"),
    [
        ("prod", "sapi-structured-api-database", True),
        ("prod", "sapi-structured-api-app", True),
        ("team-a", "sapi-structured-api-database", False),  # same name, another namespace
        ("prod", "llm-key", False),
        ("team-b", "shared-db", True),  # a bare name is protected in every namespace
    ],
)
def test_protected_secrets_match_by_namespace_and_name(
    namespace: str, name: str, protected: bool
) -> None:
    listed = [
        "prod/sapi-structured-api-app",
        "prod/sapi-structured-api-database",
        " shared-db ",
    ]
    assert is_protected(namespace, name, listed) is protected


def test_resolved_key_is_stored_encrypted_with_a_version() -> None:
    result = check(SPEC, "team-a", SecretRead("found", {"apiKey": b64("sk-123\n")}))
    assert result.valid and result.reason == "SecretResolved" and result.plaintext == "sk-123"
    stored = stored_credential(result, RING)
    assert "sk-123" not in stored.ciphertext and RING.decrypt(stored.ciphertext) == "sk-123"
    assert stored.version == RING.version("sk-123")


@pytest.mark.parametrize(
    "spec",
    [
        {"type": "Echo", "models": [{"name": "echo"}]},
        {"type": "OpenAICompatible", "baseURL": "http://127.0.0.1:9", "models": [{"name": "m"}]},
    ],
)
def test_provider_without_secret_ref_needs_no_key(spec: dict[str, object]) -> None:
    result = check(AIProviderSpec.model_validate(spec), "team-a", None)
    assert result.valid and result.reason == "NotRequired"
    assert stored_credential(result, RING) is NO_CREDENTIAL
