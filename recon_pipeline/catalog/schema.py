"""The catalog's tables: the products it owns, plus the durable records of DESIGN.md.

Plain SQLAlchemy Core, so the same schema runs on SQLite (embedded default) and PostgreSQL.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

products = Table(
    "products",
    metadata,
    Column("id", String(64), primary_key=True, comment="Catalog id; the Stripe product id is derived from it"),
    Column("name", String(250), nullable=False),
    Column("description", Text, nullable=True),
    Column("active", Boolean, nullable=False, default=True),
    Column("metadata", JSON, nullable=True, comment="Metadata keys the catalog manages in Stripe"),
    Column("unit_amount", BigInteger, nullable=True, comment="Price in the currency's smallest unit; NULL = no price"),
    Column("currency", String(3), nullable=True),
    Column("recurring_interval", String(8), nullable=True, comment="day|week|month|year, NULL = one-time"),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_products_updated_at", products.c.updated_at)
