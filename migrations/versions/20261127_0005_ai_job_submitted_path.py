"""ai_job.path: the path a job was submitted on

Token budgets are matched against the request path; a job submitted on `/v2/ai/jobs`
must be reserved against that path when the worker reserves again after a retry, not
against `/v1/ai/jobs`. Existing rows were all submitted on `/v1/ai/jobs`.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 00:10:00+00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "ai_job",
        sa.Column(
            "path",
            sqlmodel.sql.sqltypes.AutoString(length=200),
            server_default="/v1/ai/jobs",
            nullable=False,
        ),
    )


def downgrade() -> None:
    op.drop_column("ai_job", "path")
