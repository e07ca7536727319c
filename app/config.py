"""One typed settings object for every process (api, worker, beat, operator).

Values come from the environment (or a `.env` file in development). Secrets have no
default; outside development a missing or placeholder secret stops the process at
start-up instead of running with something guessable.
"""

from __future__ import annotations

import secrets
from enum import StrEnum
from typing import Annotated, Any, Final, Literal, Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PLACEHOLDERS: Final = frozenset({"", "changeme", "change-me", "secret", "dev", "development"})


class Environment(StrEnum):
    """Where the process runs; only `development` and `test` may invent secrets."""

    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """All configuration, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    app_env: Environment = Field(
        default=Environment.PRODUCTION, description="development, test or production"
    )
    app_name: str = Field(default="structured-api", description="Service name in logs/traces")
    log_level: str = Field(default="INFO", description="Root log level")
    log_json: bool = Field(default=True, description="JSON log lines (one object per line)")

    secret_key: SecretStr | None = Field(
        default=None,
        description="Flask secret and key-derivation root. Required outside development.",
    )

    database_url: str = Field(
        default="postgresql+psycopg2://postgres@127.0.0.1:5432/structured_api",
        description="SQLAlchemy URL of PostgreSQL",
    )
    db_pool_size: int = Field(default=5, ge=1, le=100, description="Connections kept per process")
    db_max_overflow: int = Field(default=5, ge=0, le=100, description="Extra connections on burst")
    db_pool_timeout: float = Field(
        default=5.0, gt=0, description="Seconds to wait for a pooled connection"
    )
    db_connect_timeout: int = Field(
        default=3, ge=1, description="Seconds to open a PostgreSQL connection"
    )
    db_statement_timeout_ms: int = Field(
        default=10_000, ge=0, description="PostgreSQL statement_timeout (0 = off)"
    )

    redis_url: str = Field(default="redis://127.0.0.1:6379/0", description="Redis URL")
    redis_socket_timeout: float = Field(
        default=0.5, gt=0, description="Seconds per Redis command before giving up"
    )
    redis_connect_timeout: float = Field(
        default=0.5, gt=0, description="Seconds to open a Redis connection"
    )

    celery_broker_url: str | None = Field(
        default=None, description="Celery broker (defaults to REDIS_URL)"
    )
    celery_result_backend: str | None = Field(
        default=None, description="Celery result backend (defaults to REDIS_URL)"
    )
    celery_task_always_eager: bool = Field(
        default=False, description="Run tasks inline (only for unit tests of task bodies)"
    )
    celery_visibility_timeout: int = Field(
        default=7200,
        ge=60,
        description="Seconds before an unacked task is redelivered; above any retry delay",
    )

    # Observability (issue 7, docs/observability.md).
    metrics_enabled: bool = Field(
        default=True, description="Record Prometheus metrics and serve them on METRICS_PORT"
    )
    prometheus_multiproc_dir: str | None = Field(
        default=None,
        description="prometheus-client multiprocess directory (gunicorn and Celery workers; "
        "wiped at start); read by prometheus-client itself at import",
    )
    metrics_port: int = Field(
        default=9808,
        ge=0,
        le=65535,
        description="Metrics port of every process: api (served by the gunicorn master for all "
        "its workers), worker and operator",
    )
    metrics_address: str = Field(
        default="127.0.0.1", description="Bind address of that metrics port (0.0.0.0 in pods)"
    )
    metrics_on_api_port: bool = Field(
        default=False,
        description="Also serve GET /metrics on the API port; off, an Ingress routing / to the "
        "api cannot expose it (scrape METRICS_PORT instead)",
    )
    tracing_enabled: bool = Field(
        default=False,
        description="OpenTelemetry traces; the exporter reads the standard OTEL_EXPORTER_OTLP_* "
        "variables",
    )
    otel_service_name: str | None = Field(
        default=None, description="service.name of spans (defaults to APP_NAME)"
    )
    otel_traces_exporter: Literal["otlp", "console", "none"] = Field(
        default="otlp", description="Span exporter: otlp (HTTP/protobuf), console or none"
    )
    otel_traces_sampler: str = Field(
        default="parentbased_traceidratio",
        description="OTel sampler name (always_on, traceidratio, parentbased_traceidratio, ...)",
    )
    otel_traces_sampler_arg: float = Field(
        default=0.1, ge=0.0, le=1.0, description="Sampling ratio of the ratio samplers"
    )

    max_content_length: int = Field(
        default=1_048_576, ge=1024, description="Largest accepted request body, bytes"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Allowed CORS origins; empty disables CORS"
    )
    trusted_proxies: int = Field(
        default=0,
        ge=0,
        le=5,
        description="Proxies in front whose X-Forwarded-* is trusted; 0 uses the TCP peer "
        "address (anything more than the proxies you run lets clients choose their IP)",
    )
    ratelimit_ipv6_prefix: int = Field(
        default=64,
        ge=32,
        le=128,
        description="IPv6 clients share IP-keyed limits and login/register throttles per "
        "/N network (one host usually holds a whole /64); IPv4 is always per address",
    )
    readiness_timeout: float = Field(
        default=1.0, gt=0, description="Seconds each /readyz dependency check may take"
    )

    docs_enabled: bool = Field(default=True, description="Serve /docs and OpenAPI documents")

    # Runtime config store (issue 4, docs/config-store.md).
    config_poll_interval: float = Field(
        default=2.0,
        ge=0.1,
        le=60,
        description="Seconds between config generation polls (fallback to Redis pub/sub)",
    )
    config_initial_load_timeout: float = Field(
        default=2.0,
        ge=0,
        le=30,
        description="Seconds a process's first request may wait for the first config load",
    )
    config_retry_max_seconds: float = Field(
        default=30.0, ge=1, le=600, description="Longest backoff between config reload retries"
    )
    version_lifecycle_exempt_paths: Annotated[list[str], NoDecode] = Field(
        default=["/v1/auth/", "/v1/admin/", "/v2/auth/", "/v2/admin/"],
        description="Path prefixes never refused with 410 by a retired version or brownout "
        "(headers and warnings still apply), so an operator can always log in and undo it",
    )
    usage_flush_seconds: float = Field(
        default=10.0,
        ge=0.1,
        le=60,
        description="Seconds between writes of each process's per-version, per-caller request "
        "counts to Redis (ApiVersion status.requestsLastHour and topCallers)",
    )

    # Rate limiting and response cache (issue 4, docs/rate-limiting.md, docs/caching.md).
    rate_limit_default_enabled: bool = Field(
        default=True, description="Apply the default limit to requests no policy matches"
    )
    rate_limit_default_requests: int = Field(
        default=600, ge=1, le=10_000_000, description="Requests per window of the default limit"
    )
    rate_limit_default_window: str = Field(
        default="1m",
        pattern=r"^[1-9][0-9]{0,6}(s|m|h|d)$",
        description="Window of the default limit (30s, 1m, 1h, 1d)",
    )
    rate_limit_redis_url: str | None = Field(
        default=None, description="Redis of the rate limiter (defaults to REDIS_URL)"
    )
    rate_limit_redis_timeout: float = Field(
        default=0.2,
        gt=0,
        le=2,
        description="Connect/read timeout of the limiter's Redis calls, seconds; past it the "
        "policy's failure mode decides",
    )
    cache_enabled: bool = Field(
        default=True, description="Serve opted-in GET endpoints from the Redis response cache"
    )
    cache_redis_timeout: float = Field(
        default=0.2,
        gt=0,
        le=2,
        description="Connect/read timeout of the response cache's Redis calls, seconds; past "
        "it the value is computed without the cache",
    )

    # Identity and access (issue 3, docs/auth.md).
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

    # AI provider keys at rest (issue 6 writes them, issue 5 reads them; app/core/crypto.py).
    credential_encryption_keys: SecretStr | None = Field(
        default=None,
        description="Comma-separated Fernet keys encrypting AI provider keys in PostgreSQL, "
        "newest first (it encrypts; all decrypt). Unset: one key derived from SECRET_KEY",
    )

    # AI gateway and background jobs (issue 5, docs/ai.md, docs/jobs.md).
    ai_connect_timeout: float = Field(
        default=3.0, gt=0, le=60, description="Seconds to open a connection to an AI provider"
    )
    ai_request_deadline: float = Field(
        default=55.0,
        gt=0,
        le=3600,
        description="Seconds one generate call may take across retries and fallbacks (keep "
        "it below GUNICORN_TIMEOUT)",
    )
    ai_retry_base_seconds: float = Field(
        default=0.25, gt=0, le=60, description="First provider retry delay (doubles, full jitter)"
    )
    ai_retry_max_wait: float = Field(
        default=8.0,
        gt=0,
        le=300,
        description="Longest single wait before a provider retry; a longer Retry-After falls "
        "back to the next provider instead",
    )
    ai_breaker_failures: int = Field(
        default=5, ge=1, le=1000, description="Consecutive provider failures that open its breaker"
    )
    ai_breaker_open_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="Seconds an open breaker waits before one probe"
    )
    ai_max_prompt_chars: int = Field(
        default=200_000,
        ge=1,
        le=10_000_000,
        description="Characters one generate or job request may send as its prompt, all "
        "messages together; longer is 413 AI_PROMPT_TOO_LARGE",
    )
    ai_stream_max_seconds: float = Field(
        default=300.0,
        gt=0,
        le=3600,
        description="Seconds a streamed generation may run in all; then it ends with an error "
        "event (AI_PROVIDER_TIMEOUT), charged and recorded for what was sent",
    )
    ai_max_concurrent_per_caller: int = Field(
        default=8,
        ge=0,
        le=10_000,
        description="Generations (JSON or streamed) one user may run at once across every "
        "process and replica; one more is 429 RATE_CONCURRENCY_LIMIT (0 = no cap)",
    )
    ai_default_max_tokens: int = Field(
        default=512, ge=1, le=200_000, description="max_tokens of a request that names none"
    )
    ai_allowed_http_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts (names or IP addresses, comma-separated) an AI provider may be "
        "called on over plain http; every other baseURL must be https. Link-local and cloud "
        "metadata addresses are refused whatever this says",
    )
    ai_history_content: Literal["none", "redacted", "full"] = Field(
        default="redacted",
        description="What history keeps of prompts/responses: none (length and hash only), "
        "redacted (emails, numbers and key-like strings masked) or full",
    )
    ai_history_max_chars: int = Field(
        default=4000, ge=0, le=1_000_000, description="Characters of prompt/response kept"
    )
    ai_history_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days generation records are kept"
    )
    ai_history_lease_seconds: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Seconds after which history records a stopped process was writing are "
        "queued again (and how often beat sweeps the history queue)",
    )
    job_max_retries: int = Field(
        default=3, ge=0, le=20, description="Retries of a failing AI job before dead letter"
    )
    job_retry_base_seconds: float = Field(
        default=5.0, gt=0, le=3600, description="First job retry delay (doubles, full jitter)"
    )
    job_retry_max_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Longest job retry delay; must stay below CELERY_VISIBILITY_TIMEOUT",
    )
    job_max_redeliveries: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Times one attempt may be redelivered after a lost worker before it is "
        "dead-lettered (a job that kills its worker must not loop forever)",
    )
    job_retention_days: int = Field(
        default=7, ge=1, le=3650, description="Days finished jobs are kept"
    )
    job_requeue_after_seconds: float = Field(
        default=900.0,
        ge=10,
        description="A job still queued (or running with an expired lease) this long is "
        "re-sent by beat; a duplicate message is harmless",
    )
    idempotency_key_ttl_seconds: int = Field(
        default=86_400, ge=60, le=30 * 86_400, description="How long an Idempotency-Key binds"
    )
    dead_letter_retention_days: int = Field(
        default=30, ge=1, le=3650, description="Days dead letters are kept"
    )

    # Kubernetes operator (issue 6, docs/operator.md).
    operator_namespaces: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Namespaces the operator watches (comma-separated); empty = cluster-wide",
    )
    operator_protected_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Secrets the operator never reads as AI provider keys, even when "
        "labelled (comma-separated namespace/name, or name for any namespace): the chart "
        "lists the release's own (database and Redis URLs, SECRET_KEY, encryption keys)",
    )
    operator_liveness_port: int = Field(
        default=8080, ge=1, le=65535, description="Port of the operator's /healthz (kopf)"
    )
    operator_drift_interval: float = Field(
        default=30.0,
        ge=1,
        le=3600,
        description="Seconds between checks that repair config rows changed behind the operator",
    )
    operator_watch_timeout: int = Field(
        default=300,
        ge=10,
        le=3600,
        description="Server-side length of one watch request, seconds (client gives up 30 s later)",
    )
    operator_inactivity_timeout: float = Field(
        default=70.0,
        ge=10,
        le=600,
        description="Seconds without any watch event (bookmarks come every 60 s) before "
        "the operator reconnects a stream (nolar/kopf#1276)",
    )
    operator_request_timeout: float = Field(
        default=30.0, ge=1, le=300, description="Timeout of the operator's other API calls, s"
    )

    @field_validator("operator_namespaces", mode="before")
    @classmethod
    def _split_namespaces(cls, value: Any) -> Any:
        # Comma-separated in the environment (`OPERATOR_NAMESPACES=team-a,team-b`).
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @field_validator("database_url")
    @classmethod
    def _normalise_database_url(cls, value: str) -> str:
        # Heroku-style and bare URLs name no driver; pin psycopg2 explicitly.
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg2://" + value[len(prefix) :]
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator(
        "cors_origins",
        "version_lifecycle_exempt_paths",
        "ai_allowed_http_hosts",
        "operator_protected_secrets",
        mode="before",
    )
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        # Comma-separated in the environment (`CORS_ORIGINS=https://a,https://b`).
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        return value

    @model_validator(mode="after")
    def _fail_closed_on_secrets(self) -> Self:
        relaxed = self.app_env in (Environment.DEVELOPMENT, Environment.TEST)
        key = self.secret_key.get_secret_value() if self.secret_key else ""
        if key.lower() in PLACEHOLDERS or len(key) < 32:
            if not relaxed:
                raise ValueError(
                    "SECRET_KEY is missing, a placeholder or shorter than 32 characters; "
                    "set it (e.g. from a Kubernetes Secret) outside development"
                )
            # Development and tests get a random per-process key: nothing guessable.
            object.__setattr__(self, "secret_key", SecretStr(secrets.token_urlsafe(48)))
        return self

    @model_validator(mode="after")
    def _fail_closed_on_signing_key(self) -> Self:
        # Development and tests derive a key from SECRET_KEY (app/core/auth/keys.py);
        # anywhere else a missing or placeholder key must stop the process.
        if self.app_env in (Environment.DEVELOPMENT, Environment.TEST):
            return self
        key = self.jwt_signing_key.get_secret_value() if self.jwt_signing_key else ""
        if key.strip().lower() in PLACEHOLDERS or "PRIVATE KEY-----" not in key:
            raise ValueError(
                "JWT_SIGNING_KEY is missing or not a PEM private key; set it (e.g. from a "
                "Kubernetes Secret) outside development"
            )
        return self

    @model_validator(mode="after")
    def _job_retries_fit_visibility(self) -> Self:
        # A retry delay longer than the visibility timeout makes Redis redeliver the task
        # again and again (celery docs, backends-and-brokers/redis, "Visibility timeout").
        if self.job_retry_max_seconds >= self.celery_visibility_timeout:
            raise ValueError("JOB_RETRY_MAX_SECONDS must be below CELERY_VISIBILITY_TIMEOUT")
        return self

    @property
    def is_development(self) -> bool:
        """True for the local `make dev` stack."""
        return self.app_env is Environment.DEVELOPMENT

    @property
    def broker_url(self) -> str:
        """Celery broker URL, defaulting to the shared Redis."""
        return self.celery_broker_url or self.redis_url

    @property
    def result_backend(self) -> str:
        """Celery result backend URL, defaulting to the shared Redis."""
        return self.celery_result_backend or self.redis_url

    def secret(self) -> str:
        """The secret key in clear; only for code that derives keys from it."""
        assert self.secret_key is not None  # guaranteed by the validator
        return self.secret_key.get_secret_value()


def settings_markdown() -> str:
    """The configuration table kept in README.md (environment variable, default, meaning)."""
    rows = ["| Variable | Default | Meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.is_required():
            default = "*(required)*"
        elif field.default_factory is not None:
            default = "`[]`" if field.default_factory is list else "*(generated)*"
        elif isinstance(field.default, SecretStr) or field.default is None:
            default = "*(none)*"
        else:
            default = f"`{getattr(field.default, 'value', field.default)}`"
        rows.append(f"| `{name.upper()}` | {default} | {field.description or ''} |")
    return "\n".join(rows) + "\n"
