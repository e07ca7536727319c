"""`flask ...` commands. More groups (users, api-keys, dead-letters) join here."""

from __future__ import annotations

import json

import click
from flask import Flask, current_app

from app.core.health import readiness


def register_cli(app: Flask) -> None:
    """Attach the command groups to `app`."""

    @app.cli.command("check")
    def check() -> None:
        """Print each dependency's readiness and exit non-zero when one fails."""
        results = readiness().run()
        for r in results:
            click.echo(json.dumps(r.__dict__))
        if not all(r.ok for r in results):
            raise SystemExit(1)

    @app.cli.group("config")
    def config_group() -> None:
        """Inspect the runtime config store."""

    @config_group.command("show")
    def config_show() -> None:
        """Print the config snapshot (generation and contents, secrets redacted) as JSON."""
        from app.api.v1.admin_config import snapshot_entry
        from app.core.config_store import config_store

        snap = config_store().refresh()
        click.echo(
            json.dumps(
                {
                    "generation": snap.generation,
                    "objects": {
                        kind: [snapshot_entry(e) for e in sorted(v.values(), key=lambda e: e.name)]
                        for kind, v in snap.entries.items()
                    },
                    "invalid": [{"kind": i.kind, "name": i.name} for i in snap.invalid],
                },
                indent=2,
                default=str,
            )
        )

    @app.cli.command("routes-openapi")
    @click.argument("major", type=int, default=1)
    def routes_openapi(major: int) -> None:
        """Print the OpenAPI document of one version."""
        from app.api.docs import openapi_document

        with current_app.test_request_context():
            click.echo(json.dumps(openapi_document(major), indent=2))
