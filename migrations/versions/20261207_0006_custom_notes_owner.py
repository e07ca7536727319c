"""custom_notes.owner_id: every note of the example belongs to a user

The notes example used to be writable by anyone. Rows written before this revision
have no owner and nobody could be shown them any more, so they are deleted (the
example's own table only; anonymous writes were exactly the problem). The index serves
every query of the example: one owner's notes, newest first.

Revision ID: 0006_notes_owner
Revises: 0005
Create Date: 2026-12-07 06:00:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_notes_owner"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM custom_notes")
    op.add_column("custom_notes", sa.Column("owner_id", sa.Uuid(), nullable=False))
    op.create_foreign_key(
        "custom_notes_owner_id_fkey",
        "custom_notes",
        "users",
        ["owner_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index(
        "ix_custom_notes_owner_created",
        "custom_notes",
        ["owner_id", "created_at", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_custom_notes_owner_created", table_name="custom_notes")
    op.drop_constraint("custom_notes_owner_id_fkey", "custom_notes", type_="foreignkey")
    op.drop_column("custom_notes", "owner_id")
