"""`flask check` and `flask routes-openapi`: the assembled app as a whole."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app

from app.core.health import readiness
from app.core.openapi import openapi_document


@click.command("check")
def check() -> None:
    """Print each dependency's readiness and exit non-zero when one fails."""
    results = readiness().run()
    for r in results:
        click.echo(json.dumps(r.__dict__))
    if not all(r.ok for r in results):
        raise SystemExit(1)


@click.command("routes-openapi")
@click.argument("major", type=int, default=1)
def routes_openapi(major: int) -> None:
    """Print the OpenAPI document of one version."""
    with current_app.test_request_context():
        click.echo(json.dumps(openapi_document(major), indent=2))


def register_cli(app: Flask) -> None:
    """Attach the app-wide commands to `app`."""
    app.cli.add_command(check)
    app.cli.add_command(routes_openapi)
