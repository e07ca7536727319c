"""Settings fail closed on secrets and normalise what they are given."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.auth.keys import generate_pem
from app.settings import Settings


@pytest.mark.parametrize("value", [None, "", "changeme", "secret", "short-but-real"])
def test_production_refuses_missing_placeholder_or_short_secret_key(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(app_env="production", secret_key=value)


def test_production_accepts_a_real_secret_key() -> None:
    key = "k" * 48
    # Production also fails closed without a JWT signing key (tests/auth).
    settings = Settings(app_env="production", secret_key=key, jwt_signing_key=generate_pem())
    assert settings.secret() == key
    assert key not in repr(settings)


@pytest.mark.parametrize("env", ["development", "test"])
def test_development_invents_a_random_secret_key(env: str) -> None:
    first = Settings(app_env=env).secret()
    second = Settings(app_env=env).secret()
    assert len(first) >= 32 and first != second


def test_app_env_defaults_to_production_so_forgetting_it_fails_closed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("APP_ENV", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql://u@h/db", "postgresql+psycopg2://u@h/db"),
        ("postgresql+psycopg2://u@h/db", "postgresql+psycopg2://u@h/db"),
    ],
)
def test_database_url_is_normalised_to_the_psycopg2_driver(given: str, expected: str) -> None:
    assert Settings(app_env="test", database_url=given).database_url == expected


def test_redis_url_must_name_a_redis_scheme() -> None:
    with pytest.raises(ValidationError, match="redis"):
        Settings(app_env="test", redis_url="http://cache:6379")


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_ENV", "test")
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "2048")
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    settings = Settings()
    assert settings.max_content_length == 2048
    assert settings.cors_origins == ["https://a.example", "https://b.example"]


def test_settings_are_immutable() -> None:
    settings = Settings(app_env="test")
    with pytest.raises(ValidationError):
        settings.max_content_length = 1  # type: ignore[misc]


def test_readme_configuration_table_matches_settings() -> None:
    from pathlib import Path

    from gen_docs import readme_with_settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    assert readme == readme_with_settings(readme), "run `make docs`"


@pytest.mark.parametrize(
    ("duration", "deadline", "retry"),
    [(10, 10, 2), (10, 12, 2), (10, 7, 6), (5, 4, 4)],
    ids=["deadline-equals-duration", "deadline-above-duration", "retry-too-long", "no-retry"],
)
def test_lease_timings_that_could_overlap_two_leaders_are_refused(
    duration: float, deadline: float, retry: float
) -> None:
    with pytest.raises(ValidationError, match="OPERATOR_LEASE_DURATION > OPERATOR_LEASE_RENEW"):
        Settings(
            app_env="test",
            operator_lease_duration=duration,
            operator_lease_renew_deadline=deadline,
            operator_lease_retry_period=retry,
        )


def test_the_chart_lease_timings_are_accepted() -> None:
    settings = Settings(
        app_env="test",
        operator_lease_duration=8,
        operator_lease_renew_deadline=6,
        operator_lease_retry_period=1,
    )
    assert settings.operator_lease_renew_deadline == 6
