"""Several Stripe accounts: each dead letter remembers the account it failed in (issue 21).

A letter of a product the catalog no longer has (an orphan archived or adopted) is replayed
in that account, not in the first one. Letters already there failed in the one account of
an install without RECON_STRIPE_ACCOUNTS, or are replayed where their product is sold:
`default` for them.

Revision ID: r0008
Revises: r0007
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0008"
down_revision = "r0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.add_column(
            sa.Column("account", sa.String(length=32), nullable=False, server_default="default", comment="The Stripe account it failed in: a name of RECON_STRIPE_ACCOUNTS")
        )


def downgrade() -> None:
    with op.batch_alter_table("dead_letter") as batch:
        batch.drop_column("account")
