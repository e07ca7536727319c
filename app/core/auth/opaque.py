"""Opaque secrets (refresh tokens, API keys): generated, recognised and hashed.

Both carry 256 random bits, so they are stored as a plain SHA-256 digest rather than
argon2: nobody can brute-force a 2^256 space, a slow hash would add tens of
milliseconds and several MiB per request for no gain, and an unsalted digest can be
looked up through a unique index in O(1) (an argon2 hash is salted, so it cannot).
API keys end in a CRC32 checksum (the GitHub token format's idea) so malformed or
made-up keys are refused without a cache or database lookup, and secret scanners can
recognise them by their `sapi_` prefix.
"""

from __future__ import annotations

import hashlib
import secrets
import zlib
from typing import Final

REFRESH_PREFIX: Final = "srt_"
API_KEY_PREFIX: Final = "sapi_"
_RANDOM_BYTES: Final = 32
_BODY_LENGTH: Final = 43  # len(token_urlsafe(32))
_CHECKSUM_LENGTH: Final = 8
API_KEY_LENGTH: Final = len(API_KEY_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
DISPLAY_LENGTH: Final = len(API_KEY_PREFIX) + 8


def digest(secret: str) -> str:
    """SHA-256 hex digest: how refresh tokens and API keys are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """A fresh opaque refresh token."""
    return REFRESH_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def _checksum(body: str) -> str:
    return f"{zlib.crc32(body.encode()):08x}"


def new_api_key() -> str:
    """A fresh API key: `sapi_` + 43 random base64url characters + an 8-hex CRC32."""
    body = secrets.token_urlsafe(_RANDOM_BYTES)
    return API_KEY_PREFIX + body + _checksum(body)


def looks_like_api_key(value: str) -> bool:
    """True when `value` has the API-key shape and a valid checksum (no lookup)."""
    if len(value) != API_KEY_LENGTH or not value.startswith(API_KEY_PREFIX):
        return False
    body = value[len(API_KEY_PREFIX) : len(API_KEY_PREFIX) + _BODY_LENGTH]
    return secrets.compare_digest(_checksum(body), value[-_CHECKSUM_LENGTH:])


def display_prefix(key: str) -> str:
    """The first characters of a key, kept so owners can tell their keys apart."""
    return key[:DISPLAY_LENGTH]
