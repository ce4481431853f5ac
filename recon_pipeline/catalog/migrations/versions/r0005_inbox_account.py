"""Several Stripe accounts: each received event remembers the account it came from (issue 16).

Every event already received came from the one account of an install without
RECON_STRIPE_ACCOUNTS: `default`.

Revision ID: r0005
Revises: r0004
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0005"
down_revision = "r0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.add_column(
            sa.Column("account", sa.String(length=32), nullable=False, server_default="default", comment="The Stripe account it came from: a name of RECON_STRIPE_ACCOUNTS")
        )


def downgrade() -> None:
    with op.batch_alter_table("inbox") as batch:
        batch.drop_column("account")
