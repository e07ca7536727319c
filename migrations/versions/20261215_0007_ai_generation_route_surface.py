"""ai_generation: the upstream model a routed call reached, and the surface it came in on

`model` stays the name the caller sent (an `AIModelRoute`'s public name, or a provider's
model); `upstream_model` is the model (or Azure deployment) the answering provider was
asked for, null for calls no provider answered. `surface` is `generate` (`/v{n}/ai/
generate` and jobs), `openai` or `anthropic` (the compatible surfaces). Existing rows
all came from generate and were never routed: their model is their upstream model.

Revision ID: 0007_ai_route_surface
Revises: 0006_notes_owner
Create Date: 2026-12-15 00:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0007_ai_route_surface"
down_revision: str | None = "0006_notes_owner"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ai_generation",
        sa.Column("upstream_model", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True),
    )
    op.add_column(
        "ai_generation",
        sa.Column(
            "surface",
            sqlmodel.sql.sqltypes.AutoString(length=16),
            server_default="generate",
            nullable=False,
        ),
    )
    op.execute("UPDATE ai_generation SET upstream_model = model WHERE provider IS NOT NULL")


def downgrade() -> None:
    op.drop_column("ai_generation", "surface")
    op.drop_column("ai_generation", "upstream_model")
