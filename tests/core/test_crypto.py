"""AI provider keys at rest: Fernet tokens, rotation with a MultiFernet keyring."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr

from app.core.crypto import (
    CredentialDecryptError,
    CredentialKeyError,
    decrypt_secret,
    encrypt_secret,
    keyring,
)
from app.settings import Settings

SECRET = "s" * 48


def settings(keys: str | None = None, secret: str = SECRET) -> Settings:
    """Test settings with a fixed SECRET_KEY and optional explicit keys."""
    return Settings(
        app_env="test",
        secret_key=SecretStr(secret),
        credential_encryption_keys=SecretStr(keys) if keys else None,
    )


def test_token_decrypts_to_the_key_and_never_contains_it() -> None:
    token = encrypt_secret("sk-live-123", settings=settings())
    assert "sk-live-123" not in token
    assert decrypt_secret(token, settings=settings()) == "sk-live-123"


def test_processes_sharing_secret_key_share_the_derived_key() -> None:
    token = encrypt_secret("sk-1", settings=settings())
    assert decrypt_secret(token, settings=settings()) == "sk-1"
    with pytest.raises(CredentialDecryptError):
        decrypt_secret(token, settings=settings(secret="t" * 48))


def test_rotation_keeps_old_tokens_readable_and_encrypts_with_the_new_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    before = keyring(settings(old))
    token = before.encrypt("sk-1")
    after = keyring(settings(f"{new},{old}"))
    assert after.decrypt(token) == "sk-1"
    assert not after.is_current(token)
    assert after.is_current(after.encrypt("sk-1"))
    with pytest.raises(CredentialDecryptError):
        keyring(settings(new)).decrypt(token)


def test_version_changes_with_the_value_and_with_the_primary_key() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    ring = keyring(settings(old))
    assert ring.version("sk-1") == ring.version("sk-1") != ring.version("sk-2")
    assert keyring(settings(f"{new},{old}")).version("sk-1") != ring.version("sk-1")
    assert "sk-1" not in ring.version("sk-1") and len(ring.version("sk-1")) == 16


@pytest.mark.parametrize("bad", ["not-a-key", "a,b", " , "])
def test_malformed_keys_are_refused_without_echoing_them(bad: str) -> None:
    with pytest.raises(CredentialKeyError) as err:
        keyring(settings(bad))
    assert "not-a-key" not in str(err.value)


def test_keyring_repr_shows_no_key_material() -> None:
    key = Fernet.generate_key().decode()
    assert key not in repr(keyring(settings(key)))
