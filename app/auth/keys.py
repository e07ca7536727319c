"""Signing keys: loaded once per process, identified by their RFC 7638 thumbprint (`kid`).

The current key signs; the current and the previous key verify, so rotating
`JWT_SIGNING_KEY` (old value moved to `JWT_PREVIOUS_SIGNING_KEY`) keeps tokens issued
before the rotation valid until they expire. Parsing PEM costs milliseconds, so it
happens here at start-up and never per request.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Final

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from app.settings import Settings

PrivateKey = ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
PublicKey = ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey

MIN_RSA_BITS: Final = 2048
DEV_KEY_INFO: Final = b"structured-api/jwt-signing-key/v1"
# RFC 7638 section 3.2: only the required members, in lexicographic order.
_THUMBPRINT_MEMBERS: Final = {"OKP": ("crv", "kty", "x"), "RSA": ("e", "kty", "n")}
_THUMBPRINT_MEMBERS_EC: Final = ("crv", "kty", "x", "y")


class KeyConfigError(ValueError):
    """A configured key is unusable (wrong type, too short, not PEM)."""


@dataclass(frozen=True)
class VerificationKey:
    """A public key with the one algorithm it may be used with."""

    kid: str
    algorithm: str
    public_key: PublicKey
    jwk: dict[str, Any]


@dataclass(frozen=True)
class KeyRing:
    """The signing key and every key accepted for verification, by `kid`."""

    signing_key: PrivateKey
    current: VerificationKey
    by_kid: dict[str, VerificationKey]
    # Tokens this ring has verified (see tokens.verify_access_token): owned by the ring,
    # so a cached verdict can never outlive or cross over to another set of keys.
    verified: dict[tuple[str, str, str], Any] = field(default_factory=dict, compare=False)

    def jwks(self) -> dict[str, Any]:
        """The JSON Web Key Set: current key first, then the previous one."""
        keys = [self.current.jwk] + [v.jwk for k, v in self.by_kid.items() if k != self.current.kid]
        return {"keys": keys}


def _algorithm_of(key: PublicKey) -> str:
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "EdDSA"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeyConfigError(f"RSA signing keys need at least {MIN_RSA_BITS} bits")
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise KeyConfigError("EC signing keys must use P-256 (ES256)")
        return "ES256"
    raise KeyConfigError("signing keys must be Ed25519, RSA or EC P-256")


def _public_jwk(key: PublicKey) -> dict[str, Any]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = OKPAlgorithm.to_jwk(key, as_dict=True)
    elif isinstance(key, rsa.RSAPublicKey):
        raw = RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        raw = ECAlgorithm.to_jwk(key, as_dict=True)
    return {k: v for k, v in raw.items() if k not in ("key_ops", "ext")}


def thumbprint(jwk: dict[str, Any]) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url without padding)."""
    members = _THUMBPRINT_MEMBERS.get(jwk["kty"], _THUMBPRINT_MEMBERS_EC)
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def verification_key(public_key: PublicKey) -> VerificationKey:
    """Wrap a public key with its algorithm, JWK and `kid`."""
    algorithm = _algorithm_of(public_key)
    jwk = _public_jwk(public_key)
    kid = thumbprint(jwk)
    jwk.update({"kid": kid, "alg": algorithm, "use": "sig"})
    return VerificationKey(kid=kid, algorithm=algorithm, public_key=public_key, jwk=jwk)


def _load_private(pem: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise KeyConfigError("JWT_SIGNING_KEY is not an unencrypted PEM private key") from exc
    if not isinstance(
        key, ed25519.Ed25519PrivateKey | rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    ):
        raise KeyConfigError("signing keys must be Ed25519, RSA or EC P-256")
    return key


def _load_public(pem: str) -> PublicKey:
    if "PRIVATE KEY-----" in pem:
        return _load_private(pem).public_key()
    try:
        key = serialization.load_pem_public_key(pem.encode())
    except (ValueError, TypeError) as exc:
        raise KeyConfigError("JWT_PREVIOUS_SIGNING_KEY is not a PEM key") from exc
    if not isinstance(key, ed25519.Ed25519PublicKey | rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
        raise KeyConfigError("signing keys must be Ed25519, RSA or EC P-256")
    return key


def derive_development_key(secret: str) -> ed25519.Ed25519PrivateKey:
    """An Ed25519 key derived from SECRET_KEY (HKDF, RFC 5869) for development and tests.

    Derived rather than random so every gunicorn worker of one `make dev` stack agrees
    on the key when SECRET_KEY is set.
    """
    seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=DEV_KEY_INFO).derive(
        secret.encode()
    )
    return ed25519.Ed25519PrivateKey.from_private_bytes(seed)


def load_keyring(settings: Settings) -> KeyRing:
    """Parse the configured keys once; fall back to a derived key in development/test."""
    if settings.jwt_signing_key is not None and settings.jwt_signing_key.get_secret_value():
        signing = _load_private(settings.jwt_signing_key.get_secret_value())
    else:
        # Settings already refused to start without a key outside development/test.
        signing = derive_development_key(settings.secret())
    current = verification_key(signing.public_key())
    by_kid = {current.kid: current}
    previous = settings.jwt_previous_signing_key
    if previous is not None and previous.get_secret_value():
        old = verification_key(_load_public(previous.get_secret_value()))
        by_kid.setdefault(old.kid, old)
    return KeyRing(signing_key=signing, current=current, by_kid=by_kid)


def generate_pem(kind: str = "ed25519") -> str:
    """A fresh PEM private key (`ed25519`, `rsa` or `ec`), e.g. for a Kubernetes Secret."""
    key: PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP256R1())
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
