"""Several Stripe accounts (branch `catalog`): each product names the account it is sold in.

`products.account` is a name of RECON_STRIPE_ACCOUNTS; every existing product gets
`default`, the one account of an install that does not set it, so a single-account install
does not change.

Revision ID: c0003
Revises: c0002
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "c0003"
down_revision = "c0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.add_column(
            sa.Column("account", sa.String(length=32), nullable=False, server_default="default", comment="The Stripe account it is sold in: a name of RECON_STRIPE_ACCOUNTS")
        )
        batch.create_index("ix_products_account", ["account"])


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        batch.drop_index("ix_products_account")
        batch.drop_column("account")
