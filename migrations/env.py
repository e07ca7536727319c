"""Alembic environment: the URL comes from Settings; metadata from every model module."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import engine_from_config, pool
from sqlmodel import SQLModel

import app.models  # noqa: F401 - registers core tables
from app import custom
from app.settings import Settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

custom.import_models()
target_metadata = SQLModel.metadata


class _SchemaSettings(BaseSettings):
    """The one setting a migration needs, from the same sources as `Settings`.

    Not `Settings()` itself: that fails closed without the app's signing secrets, and a
    migration job (or `alembic upgrade --sql` on a laptop) must not need them.
    """

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")
    database_url: str = Settings.model_fields["database_url"].default


def _url() -> str:
    # Tests pass a URL through attributes; everything else uses the environment.
    url = config.attributes.get("database_url") or _SchemaSettings().database_url
    return Settings._normalise_database_url(str(url))


def run_migrations_offline() -> None:
    """Emit SQL without a connection (`alembic upgrade --sql`)."""
    context.configure(
        url=_url(), target_metadata=target_metadata, literal_binds=True, compare_type=True
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run against a live database inside one transaction."""
    connectable = config.attributes.get("connection")
    if connectable is None:
        connectable = engine_from_config(
            {"sqlalchemy.url": _url()}, prefix="sqlalchemy.", poolclass=pool.NullPool
        )
        with connectable.connect() as connection:
            _run(connection)
    else:
        _run(connectable)


def _run(connection) -> None:  # type: ignore[no-untyped-def]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        compare_server_default=False,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
