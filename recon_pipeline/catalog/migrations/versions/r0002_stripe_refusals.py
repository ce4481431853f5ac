"""Remember API keys Stripe refused (401/403), so nothing retries with them (issue 13).

Revision ID: r0002
Revises: r0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0002"
down_revision = "r0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stripe_refusals",
        sa.Column("key_fingerprint", sa.String(length=64), primary_key=True, comment="sha256 of the key, first 16 hex digits"),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False, comment="401 (the key) or 403 (what it may do)"),
        sa.Column("code", sa.String(length=64), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("stripe_refusals")
