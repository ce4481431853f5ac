"""Many prices per product (branch `catalog`): a `prices` table keyed by lookup key, and
today's product fields.

- `products` gains marketing_features, images, package_dimensions, shippable,
  statement_descriptor, tax_code, unit_label, url and default_price (the lookup key of its
  default price);
- each product's single price moves into `prices` under the lookup key Stripe already holds
  for it, `<product id>:default`, and becomes the product's default_price;
- the old price columns (unit_amount, currency, recurring_interval) of `products` go.

Revision ID: c0002
Revises: c0001
Create Date: 2026-11-25
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from alembic import op

from recon_pipeline.catalog.migrations.helpers import TEXT_ID

revision = "c0002"
down_revision = "c0001"
branch_labels = None
depends_on = None


def _new_product_columns() -> tuple[sa.Column, ...]:
    return (
        sa.Column("marketing_features", sa.JSON(), nullable=True, comment="Feature names, in order, as the pricing table shows them"),
        sa.Column("images", sa.JSON(), nullable=True, comment="Image URLs (up to 8)"),
        sa.Column("package_dimensions", sa.JSON(), nullable=True, comment="{height, length, weight, width}, inches and ounces"),
        sa.Column("shippable", sa.Boolean(), nullable=True),
        sa.Column("statement_descriptor", sa.String(length=22), nullable=True),
        sa.Column("tax_code", sa.String(length=64), nullable=True),
        sa.Column("unit_label", sa.String(length=12), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("default_price", sa.String(length=200), nullable=True, comment="lookup_key of the default price; NULL: the catalog does not choose"),
    )


def _old_price_columns() -> tuple[sa.Column, ...]:
    return (
        sa.Column("unit_amount", sa.BigInteger(), nullable=True, comment="Price in the currency's smallest unit; NULL = no price"),
        sa.Column("currency", sa.String(length=3), nullable=True),
        sa.Column("recurring_interval", sa.String(length=8), nullable=True, comment="day|week|month|year, NULL = one-time"),
    )


def _prices_columns() -> list[sa.Column]:
    return [
        sa.Column("lookup_key", sa.String(length=200), primary_key=True, comment="Stripe's lookup_key of this price"),
        sa.Column("product_id", TEXT_ID, nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=True, comment="In the currency's smallest unit; NULL for a tiered or decimal price"),
        sa.Column("unit_amount_decimal", sa.String(length=40), nullable=True, comment="A fractional amount, e.g. 0.125 (cents)"),
        sa.Column("billing_scheme", sa.String(length=16), nullable=False, comment="per_unit | tiered"),
        sa.Column("tiers_mode", sa.String(length=16), nullable=True, comment="graduated | volume (tiered prices)"),
        sa.Column("tiers", sa.JSON(), nullable=True, comment='Stripe\'s shape; the last tier\'s up_to is "inf"'),
        sa.Column("recurring_interval", sa.String(length=8), nullable=True, comment="day|week|month|year, NULL = one-time"),
        sa.Column("recurring_interval_count", sa.Integer(), nullable=True),
        sa.Column("recurring_usage_type", sa.String(length=16), nullable=True, comment="licensed | metered"),
        sa.Column("transform_quantity", sa.JSON(), nullable=True, comment="{divide_by, round}"),
        sa.Column("currency_options", sa.JSON(), nullable=True, comment="Other currencies: currency -> {unit_amount, tiers, tax_behavior, ...}"),
        sa.Column("custom_unit_amount", sa.JSON(), nullable=True, comment="{minimum, maximum, preset}: pay what you want"),
        sa.Column("tax_behavior", sa.String(length=16), nullable=True, comment="inclusive | exclusive | unspecified (NULL)"),
        sa.Column("nickname", sa.String(length=250), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    bind = op.get_bind()
    with op.batch_alter_table("products") as batch:
        for column in _new_product_columns():
            batch.add_column(column)
    op.create_table("prices", *_prices_columns())
    op.create_index("ix_prices_product", "prices", ["product_id"])

    products = sa.table(
        "products",
        sa.column("id", sa.String),
        sa.column("unit_amount", sa.BigInteger),
        sa.column("currency", sa.String),
        sa.column("recurring_interval", sa.String),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("default_price", sa.String),
    )
    prices = sa.table("prices", *(sa.column(c.name, c.type) for c in _prices_columns()))
    priced = bind.execute(sa.select(products).where(products.c.unit_amount.is_not(None))).mappings().all()
    now = dt.datetime.now(dt.UTC)
    rows = [
        {
            "lookup_key": f"{row['id']}:default",
            "product_id": row["id"],
            "active": True,
            "currency": (row["currency"] or "").lower(),
            "unit_amount": row["unit_amount"],
            "unit_amount_decimal": None,
            "billing_scheme": "per_unit",
            "tiers_mode": None,
            "tiers": None,
            "recurring_interval": row["recurring_interval"],
            "recurring_interval_count": 1 if row["recurring_interval"] else None,
            "recurring_usage_type": "licensed" if row["recurring_interval"] else None,
            "transform_quantity": None,
            "currency_options": None,
            "custom_unit_amount": None,
            "tax_behavior": None,
            "nickname": None,
            "metadata": None,
            "updated_at": row["updated_at"] or now,
        }
        for row in priced
    ]
    for start in range(0, len(rows), 1000):
        bind.execute(sa.insert(prices), rows[start : start + 1000])
    if rows:
        # String + string: `||` on SQLite and PostgreSQL, concat() on MySQL and MariaDB.
        bind.execute(sa.update(products).where(products.c.unit_amount.is_not(None)).values(default_price=products.c.id + ":default"))
    with op.batch_alter_table("products") as batch:
        for column in _old_price_columns():
            batch.drop_column(column.name)


def downgrade() -> None:
    with op.batch_alter_table("products") as batch:
        for column in _old_price_columns():
            batch.add_column(column)
    op.drop_index("ix_prices_product", "prices")
    op.drop_table("prices")
    with op.batch_alter_table("products") as batch:
        for column in _new_product_columns():
            batch.drop_column(column.name)
