"""Every drift row ever found, queryable with SQL: `drift_history` (issue 21).

Each `catalog_drift` materialization appends its rows; rows older than
RECON_DRIFT_HISTORY_DAYS (default 90) are deleted as new ones arrive.

Revision ID: r0007
Revises: r0006
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0007"
down_revision = "r0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "drift_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.String(length=64), nullable=True, comment="The Dagster run that found it"),
        sa.Column("observed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("account", sa.String(length=32), nullable=False, server_default="default", comment="The Stripe account: a name of RECON_STRIPE_ACCOUNTS"),
        sa.Column("product_id", sa.String(length=255), nullable=True),
        sa.Column("lookup_key", sa.String(length=200), nullable=True, comment="A price's lookup key; NULL for product rows"),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("field", sa.String(length=64), nullable=True),
        sa.Column("local_value", sa.Text(), nullable=True),
        sa.Column("stripe_value", sa.Text(), nullable=True),
    )
    op.create_index("ix_drift_history_product", "drift_history", ["product_id", "observed_at"])
    op.create_index("ix_drift_history_observed", "drift_history", ["observed_at"])


def downgrade() -> None:
    op.drop_index("ix_drift_history_observed", table_name="drift_history")
    op.drop_index("ix_drift_history_product", table_name="drift_history")
    op.drop_table("drift_history")
