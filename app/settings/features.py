"""Settings of the features: the runtime config store, versioning, rate limits, the
response cache, the AI gateway and its jobs, and the operator."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode

from app.settings.common import split_commas


class FeatureSettings(BaseSettings):
    """What each feature may be tuned by."""

    # Runtime config store (docs/config-store.md).
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

    # Rate limiting and response cache (docs/rate-limiting.md, docs/caching.md).
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
    rate_limit_lease_ms: int = Field(
        default=250,
        ge=0,
        le=2000,
        description="Longest a process may hold permits leased from Redis for a busy caller "
        "(app/ratelimit/leases.py); 0 keeps one Redis round trip per limited request",
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

    # AI gateway and background jobs (docs/ai.md, docs/jobs.md).
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

    # Kubernetes operator (docs/operator.md).
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
    operator_apply_crds: bool = Field(
        default=False,
        description="Server-side apply the operator's own CRDs when it starts leading, so a "
        "chart upgrade that changes a CRD takes effect (the chart turns it on)",
    )
    operator_leader_election: bool = Field(
        default=False,
        description="Elect a leader through a coordination.k8s.io Lease: only the holder "
        "reconciles, other replicas wait (the chart turns it on)",
    )
    operator_lease_name: str = Field(
        default="structured-api-operator", min_length=1, description="Name of that Lease"
    )
    operator_lease_namespace: str = Field(
        default="",
        description="Namespace of the Lease; empty: the pod's own (its service account's)",
    )
    operator_identity: str = Field(
        default="",
        description="This replica's name in the Lease; empty: host name and a random suffix",
    )
    operator_lease_duration: float = Field(
        default=8.0,
        ge=2,
        le=300,
        description="Seconds a Lease nobody renews stays held: the longest takeover after "
        "a leader dies without releasing it",
    )
    operator_lease_renew_deadline: float = Field(
        default=6.0,
        gt=0,
        le=300,
        description="Seconds a leader keeps trying to renew before it stops (must be below "
        "OPERATOR_LEASE_DURATION)",
    )
    operator_lease_retry_period: float = Field(
        default=1.0,
        gt=0,
        le=60,
        description="Seconds between renewals, and between a standby's tries",
    )

    @field_validator(
        "version_lifecycle_exempt_paths",
        "ai_allowed_http_hosts",
        "operator_namespaces",
        "operator_protected_secrets",
        mode="before",
    )
    @classmethod
    def _split_feature_lists(cls, value: Any) -> Any:
        # Comma-separated in the environment (`OPERATOR_NAMESPACES=team-a,team-b`).
        return split_commas(value)
