"""`flask users ...` and `flask api-keys ...`: admin bootstrap, accounts and keys.

No default credentials exist anywhere: the first admin is created here with a
password read from a file, the `SAPI_ADMIN_PASSWORD` environment variable or a prompt.
Every command prints JSON (one object per line) so scripts can read it.
"""

from __future__ import annotations

import json
import sys
import uuid
from pathlib import Path
from typing import Final

import click
from flask import Flask
from flask.cli import AppGroup
from pydantic import TypeAdapter, ValidationError
from sqlmodel import Session

from app.auth import api_keys as key_service
from app.auth import user_admin
from app.auth import users as user_service
from app.auth.caller import ADMIN_SCOPE_PREFIX, SCOPES, Role
from app.auth.models.api_key import MAX_EXPIRY_DAYS
from app.auth.models.user import NormalisedEmail, User
from app.auth.passwords import password_problems
from app.auth.state import auth_state
from app.core.db import session_scope
from app.core.errors import AlreadyExists, ApiError, NotFound

users_cli = AppGroup("users", help="Manage user accounts.")
keys_cli = AppGroup("api-keys", help="Create, list and revoke API keys.")
#: Who the audit log and the user-update service see as the actor of a CLI change.
CLI_ACTOR: Final = "cli"


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


def _user_json(user: User) -> str:
    return json.dumps(
        {
            "id": str(user.id),
            "email": user.email,
            "roles": sorted(user.roles),
            "disabled": not user.is_active,
            "created_at": user.created_at.isoformat(),
            "last_login_at": user.last_login_at.isoformat() if user.last_login_at else None,
        }
    )


def _find_user(session: Session, email: str) -> User:
    user = user_service.get_user_by_email(session=session, email=email.strip().lower())
    if user is None:
        raise click.ClickException(f"no user with email {email.strip().lower()}")
    return user


@users_cli.command("list")
@click.option("--email", default=None, help="Only emails containing this text.")
@click.option("--role", type=click.Choice([r.value for r in Role]), default=None)
@click.option("--disabled/--active", "disabled", default=None, help="Only disabled/active ones.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=100, show_default=True)
def list_users(email: str | None, role: str | None, disabled: bool | None, limit: int) -> None:
    """Print one JSON line per user, oldest first (the total goes to stderr)."""
    with session_scope() as session:
        rows, total = user_service.list_users(
            session=session, limit=limit, offset=0, email=email, role=role, disabled=disabled
        )
        for user in rows:
            click.echo(_user_json(user))
    click.echo(f"# {len(rows)} of {total}", err=True)


def _update(email: str, *, roles: list[str] | None, disabled: bool | None) -> None:
    with session_scope() as session:
        user = _find_user(session, email)
        try:
            updated = user_admin.update_user(
                session=session,
                auth=auth_state(),
                actor_id=CLI_ACTOR,
                user_id=user.id,
                roles=roles,
                disabled=disabled,
            )
        except ApiError as exc:
            raise click.ClickException(f"{exc.code.value}: {exc.message}") from None
        click.echo(_user_json(updated))


@users_cli.command("disable")
@click.argument("email")
@click.option("--enable", is_flag=True, help="Enable the account again instead.")
def disable_user(email: str, enable: bool) -> None:
    """Disable an account: its sessions, tokens and API keys stop working at once."""
    _update(email, roles=None, disabled=not enable)


@users_cli.command("set-roles")
@click.argument("email")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice([r.value for r in Role]),
    help="A role to hold (repeat for several); replaces the current roles.",
)
def set_roles(email: str, roles: tuple[str, ...]) -> None:
    """Replace an account's roles; its current access tokens are refused (refresh to continue)."""
    _update(email, roles=sorted(set(roles)), disabled=None)


@keys_cli.command("create")
@click.option("--email", required=True, help="Owner of the key.")
@click.option("--name", required=True, help="A label to recognise the key by.")
@click.option(
    "--scope",
    "scopes",
    multiple=True,
    type=click.Choice(sorted(SCOPES)),
    help="A scope (repeat for several). Default: every scope except admin ones.",
)
@click.option("--expires-in-days", type=click.IntRange(1, MAX_EXPIRY_DAYS), default=None)
@click.option("--key-only", is_flag=True, help="Print only the key (for KEY=$(...) in a shell).")
def create_key(
    email: str, name: str, scopes: tuple[str, ...], expires_in_days: int | None, key_only: bool
) -> None:
    """Create an API key and print it once (with its id); only its hash is stored."""
    wanted = list(scopes) or [s for s in SCOPES if not s.startswith(ADMIN_SCOPE_PREFIX)]
    with session_scope() as session:
        owner = _find_user(session, email)
        try:
            row, key = key_service.create_api_key(
                session=session,
                auth=auth_state(),
                user_id=owner.id,
                name=name,
                scopes=wanted,
                expires_in_days=expires_in_days,
            )
        except ApiError as exc:
            raise click.ClickException(f"{exc.code.value}: {exc.message}") from None
        if key_only:
            click.echo(key)
            return
        click.echo(
            json.dumps(
                {
                    "id": str(row.id),
                    "key": key,
                    "name": row.name,
                    "owner": owner.email,
                    "scopes": row.scopes,
                    "expires_at": row.expires_at.isoformat() if row.expires_at else None,
                }
            )
        )


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


def register_cli(app: Flask) -> None:
    """Attach the `users` and `api-keys` groups."""
    app.cli.add_command(users_cli)
    app.cli.add_command(keys_cli)
