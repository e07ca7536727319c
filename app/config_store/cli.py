"""`flask config ...`: inspect the runtime config store."""

from __future__ import annotations

import json

import click
from flask import Flask
from flask.cli import AppGroup

from app.config_store.extension import config_store
from app.config_store.views import snapshot_entry

config_cli = AppGroup("config", help="Inspect the runtime config store.")


@config_cli.command("show")
def config_show() -> None:
    """Print the config snapshot (generation and contents, secrets redacted) as JSON."""
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


def register_cli(app: Flask) -> None:
    """Attach `flask config` to `app`."""
    app.cli.add_command(config_cli)
