"""AIProvider keys: every way a Secret lookup can end, and what is stored."""

from __future__ import annotations

import base64

import pytest
from pydantic import SecretStr

from app.config import Settings
from app.core.crypto import keyring
from app.core.specs import AIProviderSpec
from app.services.config import NO_CREDENTIAL
from sapi_operator.credentials import SecretRead, check, stored_credential

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


def test_missing_key_message_lists_key_names_not_values() -> None:
    result = check(SPEC, "team-a", SecretRead("found", {"token": b64("sk-secret")}))
    assert "token" in result.message and "sk-secret" not in result.message


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
