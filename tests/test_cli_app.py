"""The `flask` command (app/cli_app.py): dev-stack settings, one-line failures, every command."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner, Result
from devstack import PostgresServer
from flask.cli import FlaskGroup
from sqlalchemy import Engine

from app.cli_app import create_cli_app, dev_env_file, load_dev_env

ROOT = Path(__file__).resolve().parent.parent
FLASK = Path(sys.executable).parent / "flask"
NO_SUCH_ID = str(uuid.uuid4())

#: One invocation of every command the CLI has, with arguments that pass click's parsing.
#: A command added to the CLI without a line here fails `test_the_matrix_covers_every_command`.
COMMANDS: dict[str, list[str]] = {
    "check": ["check"],
    "config show": ["config", "show"],
    "routes-openapi": ["routes-openapi", "1"],
    "users create-admin": ["users", "create-admin", "--email", "cli@example.com"],
    "users list": ["users", "list"],
    "users disable": ["users", "disable", "cli@example.com"],
    "users set-roles": ["users", "set-roles", "cli@example.com", "--role", "user"],
    "api-keys create": ["api-keys", "create", "--email", "cli@example.com", "--name", "k"],
    "api-keys list": ["api-keys", "list"],
    "api-keys revoke": ["api-keys", "revoke", NO_SUCH_ID],
    "api-keys flush-last-used": ["api-keys", "flush-last-used"],
    "dead-letters list": ["dead-letters", "list"],
    "dead-letters replay": ["dead-letters", "replay", NO_SUCH_ID],
    "ai rotate-credentials": ["ai", "rotate-credentials"],
    "ai dev-provider": ["ai", "dev-provider", "--base-url", "http://127.0.0.1:9/v1"],
}
#: Commands that open no PostgreSQL connection here (nothing buffered to flush).
NO_DATABASE = {"routes-openapi", "api-keys flush-last-used"}


def _names(group: click.Group, prefix: str = "") -> Iterator[str]:
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _names(command, f"{prefix}{name} ")
        else:
            yield prefix + name


@pytest.fixture
def flask_cli() -> FlaskGroup:
    """The `flask` command as `python -m flask` builds it, pointed at our CLI app."""
    return FlaskGroup(name="flask", load_dotenv=False)


@pytest.fixture
def base_env(tmp_path: Path, database_url: str, redis_url: str) -> dict[str, str]:
    """A working configuration (test env, real servers) and an empty dev dir."""
    (tmp_path / "password").write_text("correct horse battery staple\n", encoding="utf-8")
    return {
        "FLASK_APP": "app.cli_app:create_cli_app",
        "APP_ENV": "test",
        "DEV_DIR": str(tmp_path / "no-dev-stack"),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "SAPI_ADMIN_PASSWORD": "correct horse battery staple",
    }


@pytest.fixture(scope="module")
def stopped_postgres(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a real PostgreSQL that was started, then stopped."""
    server = PostgresServer(tmp_path_factory.mktemp("stopped") / "pg")
    server.start()
    url = server.url
    server.stop()
    return url


def _invoke(group: FlaskGroup, args: list[str], env: dict[str, str]) -> Result:
    return CliRunner().invoke(group, args, env=env, catch_exceptions=False)


def _assert_one_line_failure(result: Result, *, exit_code: int | None = None) -> str:
    assert result.exit_code != 0, result.output
    if exit_code is not None:
        assert result.exit_code == exit_code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: "), lines[0]
    return lines[0]


def test_the_matrix_covers_every_command(base_env: dict[str, str]) -> None:
    previous = dict(os.environ)
    try:
        os.environ.update(base_env)
        app = create_cli_app()
    finally:
        os.environ.clear()
        os.environ.update(previous)
    assert set(_names(app.cli)) == set(COMMANDS)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_broken_setting_is_one_line_and_exit_2(
    flask_cli: FlaskGroup, base_env: dict[str, str], name: str
) -> None:
    env = {**base_env, "ACCESS_TOKEN_TTL": "fifteen minutes"}

    line = _assert_one_line_failure(_invoke(flask_cli, COMMANDS[name], env), exit_code=2)

    assert line.startswith("Error: configuration: ACCESS_TOKEN_TTL: ")


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_missing_production_secret_is_one_line(
    flask_cli: FlaskGroup, base_env: dict[str, str], name: str
) -> None:
    env = {**base_env, "APP_ENV": "production", "SECRET_KEY": ""}

    line = _assert_one_line_failure(_invoke(flask_cli, COMMANDS[name], env), exit_code=2)

    assert "SECRET_KEY is missing" in line


@pytest.mark.parametrize("name", sorted(set(COMMANDS) - NO_DATABASE - {"check"}))
def test_postgresql_stopped_is_one_line_naming_it(
    flask_cli: FlaskGroup, base_env: dict[str, str], stopped_postgres: str, name: str
) -> None:
    env = {**base_env, "DATABASE_URL": stopped_postgres, "APP_ENV": "development"}

    line = _assert_one_line_failure(_invoke(flask_cli, COMMANDS[name], env))

    assert line.startswith("Error: PostgreSQL at postgresql+psycopg2://postgres@127.0.0.1:")
    assert "is unreachable" in line


def test_check_reports_the_stopped_database_and_fails(
    flask_cli: FlaskGroup, base_env: dict[str, str], stopped_postgres: str
) -> None:
    env = {**base_env, "DATABASE_URL": stopped_postgres}

    result = _invoke(flask_cli, ["check"], env)

    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert '"name": "postgresql", "ok": false' in result.stdout


def test_the_real_flask_command_reads_flaskenv_and_fails_in_one_line(
    base_env: dict[str, str], stopped_postgres: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "FLASK_APP"}
    env.update(base_env, DATABASE_URL=stopped_postgres)
    del env["FLASK_APP"]  # found in the repository's .flaskenv, as for a user

    done = subprocess.run(
        [str(FLASK), "users", "list"], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip

    assert done.returncode == 1, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert done.stderr.startswith("Error: PostgreSQL at ")


def test_the_cli_uses_the_dev_stacks_settings_file(
    base_env: dict[str, str], tmp_path: Path, migrated_engine: Engine
) -> None:
    dev_dir = tmp_path / "dev"
    dev_dir.mkdir()
    (dev_dir / "env").write_text(
        f"APP_ENV='test'\nDATABASE_URL='{base_env['DATABASE_URL']}'\n"
        f"REDIS_URL='{base_env['REDIS_URL']}'\n",
        encoding="utf-8",
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "APP_ENV", "FLASK_APP")
    }
    env["DEV_DIR"] = str(dev_dir)

    done = subprocess.run(
        [str(FLASK), "users", "list", "--limit", "1"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=60,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr


def test_an_unmigrated_database_says_how_to_migrate(
    flask_cli: FlaskGroup, base_env: dict[str, str], tmp_path: Path
) -> None:
    with PostgresServer(tmp_path / "empty-pg") as empty:
        env = {**base_env, "DATABASE_URL": empty.url}

        line = _assert_one_line_failure(_invoke(flask_cli, ["users", "list"], env))

    assert "is not migrated" in line
    assert "alembic upgrade head" in line


def test_exported_variables_win_over_the_dev_file(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("APP_ENV='development'\nREDIS_URL='redis://x:1/0'\n")
    environ = {"DEV_DIR": str(tmp_path), "REDIS_URL": "redis://mine:2/0"}

    assert load_dev_env(environ) == dev_env_file(environ) == tmp_path / "env"

    assert environ["REDIS_URL"] == "redis://mine:2/0"
    assert environ["APP_ENV"] == "development"


def test_no_dev_file_means_the_environment_alone(tmp_path: Path) -> None:
    environ = {"DEV_DIR": str(tmp_path / "absent")}

    assert load_dev_env(environ) is None
    assert environ == {"DEV_DIR": str(tmp_path / "absent")}
