"""`flask dead-letters ...` and `flask ai ...`: dead letters, keys, the dev provider."""

from __future__ import annotations

import contextlib
import json
import uuid
from typing import Final

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.ai import credentials as ai_credentials
from app.ai.dead_letters import service as dead_letters
from app.ai.dead_letters.models import DeadLetterPublic, DeadLetterQuery
from app.config_store import service as config_service
from app.core import redis
from app.core.db import session_scope
from app.core.errors import ApiError, NotFound
from app.settings import Settings

#: The AIProvider `make dev` registers for its provider simulator (scripts/provider_sim).
DEV_PROVIDER: Final = "dev-simulator"
DEV_MODELS: Final = ("sim-small", "sim-large")

dead_letters_cli = AppGroup("dead-letters", help="Tasks that failed their last retry.")
ai_cli = AppGroup("ai", help="AI gateway maintenance.")


@dead_letters_cli.command("list")
@click.option("--status", type=click.Choice(["pending", "replayed", "discarded"]))
@click.option("--task", "task_name", help="Only this task name.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True)
def list_command(status: str | None, task_name: str | None, limit: int) -> None:
    """Print dead letters as JSON lines, newest first."""
    query = DeadLetterQuery.model_validate(
        {"status": status, "task_name": task_name, "limit": limit}
    )
    with session_scope() as session:
        rows, total = dead_letters.list_letters(session=session, query=query)
        for row in rows:
            click.echo(DeadLetterPublic.model_validate(row, from_attributes=True).model_dump_json())
    click.echo(f"# {len(rows)} of {total}", err=True)


@dead_letters_cli.command("replay")
@click.argument("letter_id", type=click.UUID)
def replay_command(letter_id: uuid.UUID) -> None:
    """Send a pending dead letter's task again (once)."""
    with session_scope() as session:
        try:
            letter = dead_letters.replay(
                session=session, letter_id=letter_id, celery=current_app.extensions["celery"]
            )
        except ApiError as exc:
            raise click.ClickException(f"{exc.code.value}: {exc.message}") from None
        click.echo(json.dumps({"id": str(letter.id), "task_id": letter.replay_task_id}))


@ai_cli.command("rotate-credentials")
def rotate_credentials() -> None:
    """Re-encrypt every stored provider key under the first CREDENTIAL_ENCRYPTION_KEYS key."""
    settings: Settings = current_app.extensions["settings"]
    with session_scope() as session:
        changed = ai_credentials.reencrypt_all(
            session=session,
            settings=settings,
            actor="cli:rotate-credentials",
            redis_client=redis.client(),  # running processes reload within a second
        )
    click.echo(json.dumps({"reencrypted": changed}))


@ai_cli.command("dev-provider")
@click.option("--base-url", help="The simulator's OpenAI-compatible base URL (ends in /v1).")
@click.option("--remove", is_flag=True, help="Delete the development provider instead.")
def dev_provider(base_url: str | None, remove: bool) -> None:
    """Register (or --remove) the development-only provider of the local simulator.

    Refused outside APP_ENV=development: a real install declares its providers as
    AIProvider resources or through /v1/admin/ai-providers.
    """
    settings: Settings = current_app.extensions["settings"]
    if not settings.is_development:
        raise click.ClickException("dev-provider only runs with APP_ENV=development")
    source = config_service.Source.admin()
    with session_scope() as session:
        if remove:
            # Already gone (or never there): nothing to undo.
            with contextlib.suppress(NotFound):
                config_service.delete_config(
                    session=session, kind="AIProvider", name=DEV_PROVIDER, source=source,
                    actor="cli:dev-provider", redis_client=redis.client(),
                )  # fmt: skip
            click.echo(json.dumps({"name": DEV_PROVIDER, "removed": True}))
            return
        if not base_url:
            raise click.UsageError("--base-url is required (unless --remove)")
        spec = {
            "type": "OpenAICompatible",
            "baseURL": base_url,
            "models": [{"name": m} for m in DEV_MODELS],
            "defaultModel": DEV_MODELS[0],
            "timeoutSeconds": 10,
            "maxRetries": 1,
        }
        change = config_service.upsert_config(
            session=session, kind="AIProvider", name=DEV_PROVIDER, spec=spec, source=source,
            actor="cli:dev-provider", redis_client=redis.client(),
        )  # fmt: skip
        click.echo(json.dumps({"name": DEV_PROVIDER, "action": change.action, "spec": spec}))


def register_cli(app: Flask) -> None:
    """Attach the command groups to `app`."""
    app.cli.add_command(dead_letters_cli)
    app.cli.add_command(ai_cli)
