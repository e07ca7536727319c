"""`flask users ...` and `flask api-keys ...`: admin bootstrap and key management.

No default credentials exist anywhere: the first admin is created here with a
password read from a file, the `SAPI_ADMIN_PASSWORD` environment variable or a prompt.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path

import click
from flask import Flask
from flask.cli import AppGroup
from pydantic import TypeAdapter, ValidationError

from app.core.auth import auth_state
from app.core.auth.caller import Role
from app.core.auth.passwords import password_problems
from app.core.db import session_scope
from app.core.errors import AlreadyExists, NotFound
from app.models.user import NormalisedEmail
from app.services import api_keys as key_service
from app.services import users as user_service

users_cli = AppGroup("users", help="Manage user accounts.")
keys_cli = AppGroup("api-keys", help="List and revoke API keys.")


def _read_password(password_file: str | None, from_env: str | None) -> str:
    if password_file:
        if password_file == "-":
            text = sys.stdin.read()
        else:
            text = Path(password_file).read_text(encoding="utf-8")
        return text.rstrip("\r\n")
    if from_env:
        return from_env
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_cli.command("create-admin")
@click.option("--email", required=True, help="Email of the new admin account.")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, allow_dash=True),
    help="File holding the password ('-' for stdin), e.g. a mounted Secret.",
)
@click.option("--password", "from_env", envvar="SAPI_ADMIN_PASSWORD", hidden=True)
def create_admin(email: str, password_file: str | None, from_env: str | None) -> None:
    """Create an admin (password from --password-file, $SAPI_ADMIN_PASSWORD or a prompt)."""
    try:
        address = TypeAdapter(NormalisedEmail).validate_python(email)
    except ValidationError:
        raise click.UsageError("--email is not a valid email address") from None
    password = _read_password(password_file, from_env)
    problems = password_problems(password, email=address)
    if problems:
        raise click.UsageError("password " + "; ".join(problems))
    with session_scope() as session:
        try:
            user = user_service.create_user(
                session=session,
                auth=auth_state(),
                email=address,
                password=password,
                roles=[Role.ADMIN.value],
            )
        except AlreadyExists:
            raise click.ClickException(f"a user with email {address} already exists") from None
        click.echo(json.dumps({"id": str(user.id), "email": user.email, "roles": user.roles}))


@keys_cli.command("list")
@click.option("--email", default=None, help="Only keys of this owner.")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
def list_keys(email: str | None, show_all: bool) -> None:
    """Print one JSON line per key (never the key itself)."""
    with session_scope() as session:
        owner = email.strip().lower() if email else None
        for key, owner_email in key_service.list_all_keys(session=session, email=owner):
            if key.revoked_at is not None and not show_all:
                continue
            click.echo(
                json.dumps(
                    {
                        "id": str(key.id),
                        "prefix": key.prefix,
                        "name": key.name,
                        "owner": owner_email,
                        "scopes": key.scopes,
                        "created_at": key.created_at.isoformat(),
                        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
                        "last_used_at": (
                            key.last_used_at.isoformat() if key.last_used_at else None
                        ),
                        "revoked": key.revoked_at is not None,
                    }
                )
            )


@keys_cli.command("revoke")
@click.argument("key_id", type=click.UUID)
def revoke_key(key_id: uuid.UUID) -> None:
    """Revoke a key by id, whoever owns it."""
    with session_scope() as session:
        try:
            key_service.revoke_api_key(
                session=session, auth=auth_state(), key_id=key_id, user_id=None
            )
        except NotFound:
            raise click.ClickException(f"no API key {key_id}") from None
    click.echo(json.dumps({"id": str(key_id), "revoked": True}))


@keys_cli.command("flush-last-used")
def flush_last_used() -> None:
    """Write buffered last-used times to PostgreSQL now (beat does it periodically)."""
    with session_scope() as session:
        count = key_service.flush_last_used(session=session, cache=auth_state().api_keys)
    click.echo(json.dumps({"flushed": count}))


def register_auth_cli(app: Flask) -> None:
    """Attach the `users` and `api-keys` groups."""
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
