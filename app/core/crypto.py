"""Secrets at rest: AI provider keys are stored only as Fernet tokens (docs/architecture.md).

Fernet (AES-128-CBC + HMAC-SHA256, cryptography.io "Fernet (symmetric encryption)") with
a `MultiFernet` keyring for rotation: the first key of `CREDENTIAL_ENCRYPTION_KEYS`
encrypts, every key decrypts. Unset, one key is derived from `SECRET_KEY` with HKDF, so
api, worker and operator agree as long as they share that Secret.

Rotation: put the new key first and keep the old one (`new,old`) on every process; the
operator re-encrypts each provider key under the new one (its credential version changes
with the primary key, see `Keyring.version`), then the old key can be dropped.

    ring = keyring(settings)
    token = ring.encrypt("sk-...")      # store this
    ring.decrypt(token)                 # -> "sk-..." (only where the key is sent upstream)
    ring.version("sk-...")              # a short HMAC, safe in a CR status or a response
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from app.settings import Settings

_DERIVED_INFO: Final = b"structured-api/credential-encryption/v1"
_VERSION_INFO: Final = b"structured-api/credential-version/v1"
#: Hex characters of a credential version: 64 bits, enough to tell keys apart, too short
#: to help guess one.
VERSION_LENGTH: Final = 16


class CredentialKeyError(ValueError):
    """`CREDENTIAL_ENCRYPTION_KEYS` holds something that is not a Fernet key."""


class CredentialDecryptError(Exception):
    """A stored token does not decrypt with any configured key (wrong or dropped key)."""


def _hkdf(material: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(material)


def _parse_keys(raw: str) -> tuple[bytes, ...]:
    keys = tuple(k.strip().encode("ascii") for k in raw.split(",") if k.strip())
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            # Never echo the value: it is a secret even when malformed.
            raise CredentialKeyError(
                f"CREDENTIAL_ENCRYPTION_KEYS entry {position} is not a Fernet key "
                "(32 bytes, url-safe base64; make one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            ) from None
    if not keys:
        raise CredentialKeyError("CREDENTIAL_ENCRYPTION_KEYS is set but holds no key")
    return keys


@dataclass(frozen=True)
class Keyring:
    """The configured keys: the first encrypts, all decrypt."""

    keys: tuple[bytes, ...] = field(repr=False)
    _fernet: MultiFernet = field(init=False, repr=False)
    _primary: Fernet = field(init=False, repr=False)
    _version_key: bytes = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fernets = [Fernet(k) for k in self.keys]
        object.__setattr__(self, "_fernet", MultiFernet(fernets))
        object.__setattr__(self, "_primary", fernets[0])
        raw = base64.urlsafe_b64decode(self.keys[0])
        object.__setattr__(self, "_version_key", _hkdf(raw, _VERSION_INFO))

    def encrypt(self, plaintext: str) -> str:
        """A Fernet token of `plaintext` under the primary key."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, token: str) -> str:
        """The plaintext of `token`; `CredentialDecryptError` if no key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise CredentialDecryptError("stored credential does not decrypt") from None

    def is_current(self, token: str) -> bool:
        """True when `token` was encrypted with the primary key (no rotation pending)."""
        try:
            self._primary.decrypt(token.encode("ascii"))
        except (InvalidToken, UnicodeError):
            return False
        return True

    def version(self, plaintext: str) -> str:
        """A keyed hash of `plaintext`: changes when the value or the primary key changes."""
        digest = hmac.new(self._version_key, plaintext.encode("utf-8"), hashlib.sha256)
        return digest.hexdigest()[:VERSION_LENGTH]


@functools.lru_cache(maxsize=8)
def _keyring(configured: str | None, secret_key: str) -> Keyring:
    if configured:
        return Keyring(_parse_keys(configured))
    derived = base64.urlsafe_b64encode(_hkdf(secret_key.encode("utf-8"), _DERIVED_INFO))
    return Keyring((derived,))


def keyring(settings: Settings) -> Keyring:
    """The keyring `settings` configure (cached); `CredentialKeyError` on a malformed key."""
    configured = settings.credential_encryption_keys
    return _keyring(configured.get_secret_value() if configured else None, settings.secret())


def encrypt_secret(plaintext: str, *, settings: Settings) -> str:
    """Encrypt `plaintext` with the primary key of `settings`."""
    return keyring(settings).encrypt(plaintext)


def decrypt_secret(token: str, *, settings: Settings) -> str:
    """Decrypt a token written by `encrypt_secret` with any configured key."""
    return keyring(settings).decrypt(token)
