"""The local product catalog: schema, validation and reads/writes (SQLite or PostgreSQL)."""

from recon_pipeline.catalog.schema import metadata, products
from recon_pipeline.catalog.store import (
    CatalogProduct,
    InvalidProduct,
    init_schema,
    make_engine,
    read_products_frame,
    upsert_products,
    validate_product,
)

__all__ = [
    "CatalogProduct",
    "InvalidProduct",
    "init_schema",
    "make_engine",
    "metadata",
    "products",
    "read_products_frame",
    "upsert_products",
    "validate_product",
]
