"""Quarantined prices beside quarantined products (issue 15): `quarantine` says which kind
of row each is, and a price's lookup key.

Revision ID: r0003
Revises: r0002
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "r0003"
down_revision = "r0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="product", comment="product | price"))
        batch.add_column(sa.Column("lookup_key", sa.String(length=200), nullable=True, comment="A quarantined price's lookup key"))


def downgrade() -> None:
    with op.batch_alter_table("quarantine") as batch:
        batch.drop_column("lookup_key")
        batch.drop_column("kind")
