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

import base64
import hashlib
import hmac
import secrets
import zlib
from typing import Final

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

REFRESH_PREFIX: Final = "srt_"
API_KEY_PREFIX: Final = "sapi_"
_RANDOM_BYTES: Final = 32
_BODY_LENGTH: Final = 43  # len(token_urlsafe(32))
_CHECKSUM_LENGTH: Final = 8
API_KEY_LENGTH: Final = len(API_KEY_PREFIX) + _BODY_LENGTH + _CHECKSUM_LENGTH
DISPLAY_LENGTH: Final = len(API_KEY_PREFIX) + 8
SUCCESSOR_KEY_INFO: Final = b"structured-api/refresh-successor/v1"


def digest(secret: str) -> str:
    """SHA-256 hex digest: how refresh tokens and API keys are stored and looked up."""
    return hashlib.sha256(secret.encode()).hexdigest()


def new_refresh_token() -> str:
    """A fresh opaque refresh token."""
    return REFRESH_PREFIX + secrets.token_urlsafe(_RANDOM_BYTES)


def successor_key(secret: str) -> bytes:
    """The HMAC key deriving refresh-token successors, from SECRET_KEY (HKDF, RFC 5869)."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SUCCESSOR_KEY_INFO)
    return hkdf.derive(secret.encode())


def successor_refresh_token(token: str, key: bytes) -> str:
    """The one refresh token that succeeds `token`: HMAC-SHA256 of it, refresh-token shaped.

    Deterministic, so a replay inside the grace window recomputes the successor it was
    given the first time instead of needing it stored: the database keeps only
    digests, and the predecessor's digest (all a database reader has) does not yield it.
    """
    mac = hmac.new(key, token.encode(), hashlib.sha256).digest()
    return REFRESH_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


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
