"""Settings of identity and access: secrets, JWTs, refresh tokens, API keys, passwords,
login and registration throttles, and the keys encrypting AI provider keys at rest."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings


class SecuritySettings(BaseSettings):
    """Secrets have no default: app/settings/__init__.py refuses them missing outside dev."""

    secret_key: SecretStr | None = Field(
        default=None,
        description="Flask secret and key-derivation root. Required outside development.",
    )

    # Identity and access (docs/auth.md).
    jwt_issuer: str = Field(default="structured-api", description="`iss` of access tokens")
    jwt_audience: str = Field(default="structured-api", description="`aud` of access tokens")
    jwt_signing_key: SecretStr | None = Field(
        default=None,
        description="PEM private key signing access tokens (Ed25519, RSA >= 2048 or EC P-256). "
        "Required outside development/test, which derive one from SECRET_KEY.",
    )
    jwt_previous_signing_key: SecretStr | None = Field(
        default=None,
        description="An extra PEM key (private or public) accepted and published in the JWKS: "
        "the previous key after a rotation (its tokens live until they expire) or the next "
        "one before it signs",
    )
    jwt_leeway_seconds: int = Field(
        default=5, ge=0, le=60, description="Clock skew tolerated on exp/nbf/iat"
    )
    revocation_mirror_enabled: bool = Field(
        default=True,
        description="Check access tokens against a per-process copy of the revocation "
        "denylist kept fresh by Redis pub/sub (at most 1 s behind; read from Redis per "
        "request whenever it cannot be trusted); false reads Redis on every request",
    )
    revocation_legacy_until: datetime | None = Field(
        default=None,
        description="Until this instant (ISO 8601), revocation checks also read the "
        "denylist's key names of releases before Redis Cluster support, so no revoked token "
        "passes during an upgrade; set it to the upgrade time plus the access token "
        'lifetime (docs/operations.md, "Upgrading the hot-path keys")',
    )
    access_token_ttl: int = Field(
        default=900, ge=60, le=3600, description="Access token lifetime, seconds"
    )
    refresh_token_ttl: int = Field(
        default=30 * 86_400, ge=3600, le=90 * 86_400, description="Refresh token lifetime, seconds"
    )
    refresh_reuse_grace_seconds: int = Field(
        default=10,
        ge=0,
        le=60,
        description="A just-used refresh token may be presented again this long (concurrent "
        "refreshes) before it counts as reuse and revokes its family",
    )
    api_key_max_per_user: int = Field(
        default=10, ge=1, le=100, description="Active API keys one user may hold"
    )
    api_key_cache_ttl: int = Field(
        default=300, ge=5, le=3600, description="Seconds a resolved API key stays in Redis"
    )
    api_key_last_used_flush_seconds: float = Field(
        default=60.0, ge=1, description="Beat period flushing API-key last-used times to SQL"
    )
    argon2_memory_kib: int = Field(
        default=19_456, ge=7_168, description="argon2id memory cost, KiB (OWASP: 19 MiB)"
    )
    argon2_time_cost: int = Field(default=2, ge=1, le=10, description="argon2id iterations")
    argon2_parallelism: int = Field(default=1, ge=1, le=8, description="argon2id lanes")
    login_max_failures_per_account_ip: int = Field(
        default=10,
        ge=1,
        description="Failed logins per account from one client IP per window before 429",
    )
    login_max_failures_per_account: int = Field(
        default=50,
        ge=1,
        description="Failed logins per account from all IPs per LOGIN_ACCOUNT_WINDOW_SECONDS "
        "before 429 (higher and shorter than the per-IP pair: bounds how long a victim can "
        "be locked out)",
    )
    login_account_window_seconds: int = Field(
        default=300, ge=1, description="Window of the per-account login failure counter, seconds"
    )
    login_max_failures_per_ip: int = Field(
        default=100, ge=1, description="Failed logins per client IP per window before 429"
    )
    login_throttle_window_seconds: int = Field(
        default=900,
        ge=1,
        description="Window of the per-(account, IP) and per-IP login failure counters, seconds",
    )
    register_max_per_ip: int = Field(
        default=20, ge=1, description="Registration attempts per client IP per window"
    )
    register_max_per_account: int = Field(
        default=5, ge=1, description="Registration attempts per email per window"
    )
    register_throttle_window_seconds: int = Field(
        default=3600, ge=1, description="Window of the registration counters, seconds"
    )

    # AI provider keys at rest (the operator and the admin API write them; app/core/crypto.py).
    credential_encryption_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated Fernet keys encrypting AI provider keys in PostgreSQL, "
        "newest first (it encrypts; all decrypt). Unset: one key derived from SECRET_KEY",
    )
