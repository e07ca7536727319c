"""The app the `flask` command builds: `.flaskenv` points `FLASK_APP` here.

Two things differ from `create_app()`:

- The settings the dev stack's processes got (`.dev/env`, written by `make dev`) are read
  first, so `uv run flask ...` in a checkout talks to the running dev stack with nothing
  exported. Variables already in the environment win over the file; a container image
  has no `.dev/`, so there the environment alone decides, as for every other role.
- A command that fails on configuration or on an unreachable dependency prints one line
  on stderr and exits non-zero, never a traceback. `FLASK_DEBUG=1` keeps tracebacks of
  unexpected errors for whoever is debugging the CLI itself.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from pathlib import Path
from typing import Any, Final

import click
from dotenv import dotenv_values
from flask import Flask
from pydantic import ValidationError

from app.settings import Settings

ROOT: Final = Path(__file__).resolve().parent.parent
#: Exit status of a configuration error (click uses 2 for usage errors, the same family).
CONFIG_EXIT: Final = 2
#: SQLSTATE of a missing table: the schema is older than the code (not migrated yet).
UNDEFINED_TABLE: Final = "42P01"


def dev_env_file(environ: Mapping[str, str]) -> Path:
    """Where `make dev` wrote its processes' settings (`$DEV_DIR/env`, default `.dev/env`)."""
    return Path(environ.get("DEV_DIR") or ROOT / ".dev") / "env"


def load_dev_env(environ: MutableMapping[str, str]) -> Path | None:
    """Copy the dev stack's settings into `environ` where unset; the file read, if any."""
    path = dev_env_file(environ)
    if not path.is_file():
        return None
    for key, value in dotenv_values(path).items():
        if value is not None:
            environ.setdefault(key, value)
    return path


def config_problem(error: ValidationError) -> str:
    """A validation error of `Settings` as one line naming the environment variables."""
    parts = []
    for item in error.errors():
        message = str(item["msg"]).removeprefix("Value error, ")
        names = [str(part).upper() for part in item["loc"]]
        parts.append(f"{'.'.join(names)}: {message}" if names else message)
    return "; ".join(parts)


def without_password(url: str) -> str:
    """`url` with any password removed (for messages); also multi-host Sentinel URLs."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, tail = rest.rpartition("@")
    if not sep or not at or ":" not in userinfo:
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}@{tail}"


def _pgcode(exc: BaseException) -> str | None:
    return getattr(getattr(exc, "orig", None), "pgcode", None)


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def describe_failure(exc: BaseException, settings: Settings) -> str | None:
    """One line for a failure an operator can act on, or None for a bug."""
    import kombu.exceptions
    import redis.exceptions
    import sqlalchemy.exc

    from app.core.errors import ApiError

    hint = " Is `make dev` running (or DATABASE_URL / REDIS_URL set)?"
    if isinstance(exc, sqlalchemy.exc.OperationalError | sqlalchemy.exc.InterfaceError):
        where = without_password(settings.database_url)
        return f"PostgreSQL at {where} is unreachable: {_first_line(exc)}.{hint}"
    if isinstance(exc, sqlalchemy.exc.ProgrammingError) and _pgcode(exc) == UNDEFINED_TABLE:
        where = without_password(settings.database_url)
        return (
            f"PostgreSQL at {where} is not migrated ({_first_line(exc)}): "
            "run `uv run alembic upgrade head` (make dev does it on start)"
        )
    if isinstance(exc, sqlalchemy.exc.TimeoutError):
        return f"no PostgreSQL connection became free in time: {_first_line(exc)}"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        where = without_password(settings.redis_url)
        return f"Redis at {where} is unreachable: {_first_line(exc)}.{hint}"
    if isinstance(exc, kombu.exceptions.OperationalError):
        where = without_password(settings.broker_url)
        return f"the Celery broker at {where} is unreachable: {_first_line(exc)}.{hint}"
    if isinstance(exc, ApiError):
        return f"{exc.code.value}: {exc.message}"
    if isinstance(exc, OSError):
        return f"{type(exc).__name__}: {_first_line(exc)}"
    return None


def _guarded(callback: Callable[..., Any], settings: Settings) -> Callable[..., Any]:
    @functools.wraps(callback)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return callback(*args, **kwargs)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except Exception as exc:
            line = describe_failure(exc, settings)
            if line is None:
                if os.environ.get("FLASK_DEBUG") == "1":
                    raise
                line = (
                    f"unexpected {type(exc).__name__}: {_first_line(exc)} "
                    "(FLASK_DEBUG=1 shows the traceback)"
                )
            raise click.ClickException(line) from None

    return run


def _commands(group: click.Group) -> Iterator[click.Command]:
    for command in group.commands.values():
        yield command
        if isinstance(command, click.Group):
            yield from _commands(command)


def guard_commands(app: Flask, settings: Settings) -> None:
    """Make every command of `app.cli` fail with one line instead of a traceback."""
    for command in _commands(app.cli):
        if command.callback is not None:
            command.callback = _guarded(command.callback, settings)


def create_cli_app() -> Flask:
    """The app for `flask ...`: dev-stack settings loaded, one-line failures."""
    load_dev_env(os.environ)
    # A command prints its result on stdout; INFO log lines on stderr are noise there.
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    try:
        settings = Settings()
    except ValidationError as exc:
        click.echo(f"Error: configuration: {config_problem(exc)}", err=True)
        sys.exit(CONFIG_EXIT)
    from app.factory import create_app

    app = create_app(settings)
    guard_commands(app, settings)
    return app
