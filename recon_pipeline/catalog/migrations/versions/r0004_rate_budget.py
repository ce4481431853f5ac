"""One Stripe rate budget shared by every process: a row per bucket (issue 16).

Revision ID: r0004
Revises: r0003
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0004"
down_revision = "r0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_budget",
        sa.Column("bucket", sa.String(length=255), primary_key=True, comment="'<account> *' or '<account> <METHOD> <path template>'"),
        sa.Column("tat", sa.Double(), nullable=False, comment="When the next slot is free, in seconds since the epoch by the database's clock"),
    )


def downgrade() -> None:
    op.drop_table("rate_budget")
