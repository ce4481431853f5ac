"""The local product catalog: schema, validation, reads, and the only writes of catalog rows."""

from recon_pipeline.catalog.schema import metadata, products
from recon_pipeline.catalog.store import (
    Catalog,
    CatalogProduct,
    CatalogReadOnly,
    InvalidProduct,
    init_schema,
    make_engine,
    replace_products,
    upsert_products,
    validate_product,
)

__all__ = [
    "Catalog",
    "CatalogProduct",
    "CatalogReadOnly",
    "InvalidProduct",
    "init_schema",
    "make_engine",
    "metadata",
    "products",
    "replace_products",
    "upsert_products",
    "validate_product",
]
