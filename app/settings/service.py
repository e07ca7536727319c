"""Settings of the service itself: identity, logs, PostgreSQL, Redis, Celery, metrics,
traces and HTTP (body size, CORS, proxies, probes, docs)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import redis
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from app.settings.common import split_commas
from app.settings.environment import Environment
from app.settings.redis_url import (
    CeleryRedis,
    celery_redis,
    cluster_seeds,
    connect,
    is_sentinel_url,
)
from app.settings.redis_url import parse as parse_sentinel_url


class ServiceSettings(BaseSettings):
    """The process and its infrastructure."""

    app_env: Environment = Field(
        default=Environment.PRODUCTION, description="development, test or production"
    )
    app_name: str = Field(default="structured-api", description="Service name in logs/traces")
    log_level: str = Field(default="INFO", description="Root log level")
    log_json: bool = Field(default=True, description="JSON log lines (one object per line)")

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

    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        description="Redis URL: redis://, rediss://, unix:// or, through Sentinel, "
        "redis+sentinel://[:password@]host1:26379,host2:26379/<master>/<db> "
        "(docs/operations.md)",
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="Password of the Redis Sentinel nodes themselves (their requirepass), for "
        "redis+sentinel:// URLs; the data nodes' password goes in the URL",
    )
    redis_cluster_nodes: str | None = Field(
        default=None,
        description="Redis Cluster seed nodes, host:port[,host:port...]: when set, the rate "
        "limiter, token budgets, the revocation denylist and the response cache live on the "
        "Cluster; the broker, Celery results and pub/sub stay on REDIS_URL "
        '(docs/operations.md, "Redis topologies")',
    )
    redis_cluster_password: SecretStr | None = Field(
        default=None, description="Password (requirepass) of the Redis Cluster nodes"
    )
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

    # Observability (docs/observability.md).
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
        if is_sentinel_url(value):
            parse_sentinel_url(value)  # a ValueError names the wrong part, never the URL
            return value
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss://, unix:// or redis+sentinel://")
        return value

    @field_validator("redis_cluster_nodes")
    @classmethod
    def _check_cluster_nodes(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        cluster_seeds(value)  # a ValueError names the wrong part
        return value

    def cluster_seeds(self) -> list[tuple[str, int]]:
        """REDIS_CLUSTER_NODES as (host, port) pairs; empty when no Cluster is configured."""
        return cluster_seeds(self.redis_cluster_nodes) if self.redis_cluster_nodes else []

    def cluster_password(self) -> str | None:
        """REDIS_CLUSTER_PASSWORD in clear, for the Cluster client."""
        secret = self.redis_cluster_password
        return secret.get_secret_value() if secret is not None else None

    def sentinel_password(self) -> str | None:
        """REDIS_SENTINEL_PASSWORD in clear, for the clients of redis+sentinel:// URLs."""
        secret = self.redis_sentinel_password
        return secret.get_secret_value() if secret is not None else None

    def redis_client(self, url: str, **kwargs: Any) -> redis.Redis:
        """`redis.Redis.from_url(url, **kwargs)`, Sentinel URLs included (`connect`)."""
        return connect(url, sentinel_password=self.sentinel_password(), **kwargs)

    def celery_redis(self) -> tuple[CeleryRedis, CeleryRedis]:
        """Celery's broker and result backend URLs and transport options (`celery_redis`)."""
        password = self.sentinel_password()
        broker = celery_redis(self.celery_broker_url or self.redis_url, sentinel_password=password)
        backend = celery_redis(
            self.celery_result_backend or self.redis_url, sentinel_password=password
        )
        return broker, backend

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_service_lists(cls, value: Any) -> Any:
        # Comma-separated in the environment (`CORS_ORIGINS=https://a,https://b`).
        return split_commas(value)
