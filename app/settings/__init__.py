"""One typed settings object for every process (api, worker, beat, operator).

Values come from the environment (or a `.env` file in development). Secrets have no
default; outside development a missing or placeholder secret stops the process at
start-up instead of running with something guessable. The fields live in three groups,
`service.py`, `security.py` and `features.py`; `Settings` is all of them at once.
"""

from __future__ import annotations

import secrets
from typing import Self

from pydantic import SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from app.settings.environment import PLACEHOLDERS, Environment
from app.settings.features import FeatureSettings
from app.settings.security import SecuritySettings
from app.settings.service import ServiceSettings

__all__ = ["PLACEHOLDERS", "Environment", "Settings", "settings_markdown"]


class Settings(FeatureSettings, SecuritySettings, ServiceSettings):
    """All configuration, validated once at start-up."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # A rejected value may be a URL with a password in it, or a key: errors name the
        # field and the reason, never the value.
        hide_input_in_errors=True,
    )

    def limiter_redis_url(self) -> str:
        """The Redis of the rate limiter's store without a Cluster: RATE_LIMIT_REDIS_URL,
        else REDIS_URL. Stages that share a round trip with it ask whether it is REDIS_URL."""
        return self.rate_limit_redis_url or self.redis_url

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
        # Development and tests derive a key from SECRET_KEY (app/auth/keys.py);
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

    @model_validator(mode="after")
    def _lease_timings_never_overlap(self) -> Self:
        # A leader stops renewing before anyone may take the Lease, and gets at least one
        # more try (jitter 20 %) within its deadline: client-go's leaderelection checks.
        duration = self.operator_lease_duration
        deadline = self.operator_lease_renew_deadline
        if not duration > deadline > 1.2 * self.operator_lease_retry_period:
            raise ValueError(
                "OPERATOR_LEASE_DURATION > OPERATOR_LEASE_RENEW_DEADLINE > "
                "1.2 x OPERATOR_LEASE_RETRY_PERIOD is required"
            )
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
