"""`flask dead-letters ...` and `flask ai ...`: dead-letter list/replay, key re-encryption."""

from __future__ import annotations

import json
import uuid

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.config import Settings
from app.core.db import session_scope
from app.core.errors import ApiError
from app.models.jobs import DeadLetterPublic, DeadLetterQuery
from app.services import ai_credentials, dead_letters

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
            session=session, settings=settings, actor="cli:rotate-credentials"
        )
    click.echo(json.dumps({"reencrypted": changed}))


def register_ai_cli(app: Flask) -> None:
    """Attach the command groups to `app`."""
    app.cli.add_command(dead_letters_cli)
    app.cli.add_command(ai_cli)
