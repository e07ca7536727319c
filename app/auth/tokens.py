"""Access tokens: short-lived JWTs, verified with the hardening RFC 8725 asks for.

* one-entry `algorithms` list taken from the key (never from the token header);
* `kid` only as a dictionary key into keys loaded at start-up; `jku`/`x5u`/`jwk`
  headers are never followed;
* `iss`, `aud`, `exp`, `nbf`, `iat`, `jti`, `sub` required; explicit typing with
  `typ: at+jwt` (RFC 9068 section 2.1) plus a `token_type: access` claim, so no other
  token can pass as an access token.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import jwt

from app.auth.caller import ROLES
from app.auth.keys import KeyRing
from app.core.errors import ErrorCode

ACCESS_TYP: Final = "at+jwt"
TOKEN_TYPE_CLAIM: Final = "token_type"
ACCESS: Final = "access"
REQUIRED_CLAIMS: Final = ("exp", "iat", "nbf", "iss", "aud", "jti", "sub")
# A JWT of ours is ~400 bytes; refuse to parse kilobytes of attacker input.
MAX_TOKEN_LENGTH: Final = 4096
# Verified tokens per process. Verification (PyJWT parsing + Ed25519) is the largest
# CPU cost of an authenticated request; a client sends the same token for minutes.
VERIFIED_CACHE_SIZE: Final = 10_000


class TokenError(Exception):
    """A credential was rejected; `code` says why."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class AccessClaims:
    """The verified contents of an access token."""

    subject: str
    roles: frozenset[str]
    jti: str
    session_id: str | None
    issued_at: float
    expires_at: int


def issue_access_token(
    *,
    keyring: KeyRing,
    issuer: str,
    audience: str,
    ttl: int,
    subject: str,
    roles: frozenset[str] | list[str],
    session_id: str | None,
    now: float | None = None,
) -> tuple[str, AccessClaims]:
    """Sign a new access token with the current key.

    `iat` keeps milliseconds (RFC 7519 NumericDate allows fractions) so a token issued
    right after a revocation in the same second is told apart from the revoked ones.
    """
    issued = round(time.time() if now is None else now, 3)
    claims = AccessClaims(
        subject=subject,
        roles=frozenset(roles),
        jti=uuid.uuid4().hex,
        session_id=session_id,
        issued_at=issued,
        expires_at=int(issued) + ttl,
    )
    payload: dict[str, Any] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued,
        "nbf": int(issued),
        "exp": claims.expires_at,
        "jti": claims.jti,
        TOKEN_TYPE_CLAIM: ACCESS,
        "roles": sorted(claims.roles),
    }
    if session_id is not None:
        payload["sid"] = session_id
    headers = {"kid": keyring.current.kid, "typ": ACCESS_TYP}
    token = jwt.encode(
        payload, keyring.signing_key, algorithm=keyring.current.algorithm, headers=headers
    )
    return token, claims


def _invalid(message: str) -> TokenError:
    return TokenError(ErrorCode.AUTH_INVALID_TOKEN, message)


def verify_access_token(
    token: str, *, keyring: KeyRing, issuer: str, audience: str, leeway: int
) -> AccessClaims:
    """Verify signature, type and claims; raise `TokenError` with the reason.

    A token verified before by the same key ring is not parsed again: identical bytes
    carry an identical, already checked signature. Only time can invalidate it since
    (`nbf` is in the past already), so `exp` is re-checked; revocation is checked per
    request by the caller (`identify`), never cached here.
    """
    if len(token) > MAX_TOKEN_LENGTH:
        raise _invalid("The token is too long.")
    verified = keyring.verified
    cache_key = (token, issuer, audience)
    cached: AccessClaims | None = verified.get(cache_key)
    if cached is not None:
        if time.time() > cached.expires_at + leeway:
            verified.pop(cache_key, None)
            raise TokenError(ErrorCode.AUTH_TOKEN_EXPIRED, "The access token has expired.")
        return cached
    claims = _verify_uncached(
        token, keyring=keyring, issuer=issuer, audience=audience, leeway=leeway
    )
    if len(verified) >= VERIFIED_CACHE_SIZE:
        verified.clear()  # bounded memory; the next requests simply verify again
    verified[cache_key] = claims
    return claims


def _verify_uncached(
    token: str, *, keyring: KeyRing, issuer: str, audience: str, leeway: int
) -> AccessClaims:
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise _invalid("The token is not a well-formed JWT.") from None
    kid = header.get("kid")
    key = keyring.by_kid.get(kid) if isinstance(kid, str) else None
    if key is None:
        raise _invalid("The token was not signed by a known key.")
    typ = header.get("typ")
    if not isinstance(typ, str) or typ.lower() != ACCESS_TYP:
        raise _invalid("The token is not an access token.")
    try:
        claims = jwt.decode(
            token,
            key.public_key,
            algorithms=[key.algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": list(REQUIRED_CLAIMS), "strict_aud": True},
        )
    except jwt.ExpiredSignatureError:
        raise TokenError(ErrorCode.AUTH_TOKEN_EXPIRED, "The access token has expired.") from None
    except jwt.ImmatureSignatureError:
        raise _invalid("The token is not valid yet.") from None
    except jwt.InvalidTokenError:
        raise _invalid("The token signature or claims are invalid.") from None
    return _claims(claims)


def _claims(claims: dict[str, Any]) -> AccessClaims:
    if claims.get(TOKEN_TYPE_CLAIM) != ACCESS:
        raise _invalid("The token is not an access token.")
    roles = claims.get("roles")
    sid = claims.get("sid")
    ok = (
        isinstance(claims["sub"], str)
        and isinstance(claims["jti"], str)
        and isinstance(roles, list)
        and all(isinstance(r, str) and r in ROLES for r in roles)
        and (sid is None or isinstance(sid, str))
        and isinstance(claims["iat"], int | float)
        and isinstance(claims["exp"], int)
    )
    if not ok:
        raise _invalid("The token claims are malformed.")
    assert isinstance(roles, list)
    return AccessClaims(
        subject=claims["sub"],
        roles=frozenset(roles),
        jti=claims["jti"],
        session_id=sid,
        issued_at=claims["iat"],
        expires_at=claims["exp"],
    )
