"""Baseline of the catalog's own tables (branch `catalog`): `products` as release 0.1.0 made it.

Only an install whose catalog is ours gets this branch: with RECON_CATALOG_TABLE or
RECON_CATALOG_QUERY the products are the user's, and no `products` table is made beside
them. Created only if missing, as the records' baseline.

Revision ID: c0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from recon_pipeline.catalog.migrations.helpers import TEXT_ID
from recon_pipeline.catalog.migrations.helpers import create_if_missing as _create

revision = "c0001"
down_revision = None
branch_labels = ("catalog",)
depends_on = None


def upgrade() -> None:
    stamp = sa.DateTime(timezone=True)
    _create(
        "products",
        sa.Column("id", TEXT_ID, primary_key=True, comment="Catalog id; the Stripe product id is derived from it"),
        sa.Column("name", sa.String(length=250), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=True, comment="Metadata keys the catalog manages in Stripe"),
        sa.Column("unit_amount", sa.BigInteger(), nullable=True, comment="Price in the currency's smallest unit; NULL = no price"),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("recurring_interval", sa.String(length=8), nullable=True, comment="day|week|month|year, NULL = one-time"),
        sa.Column("updated_at", stamp, nullable=False),
        indexes={"ix_products_updated_at": ["updated_at"]},
    )


def downgrade() -> None:
    op.drop_table("products")
