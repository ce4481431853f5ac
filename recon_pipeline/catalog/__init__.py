"""The local product catalog: schema, validation, reads, and the only writes of catalog rows."""

from recon_pipeline.catalog.prices import CatalogPrice, InvalidPrice, default_lookup_key, validate_price
from recon_pipeline.catalog.products import CatalogProduct, InvalidProduct, validate_product
from recon_pipeline.catalog.schema import metadata, prices, products
from recon_pipeline.catalog.store import (
    Catalog,
    CatalogReadOnly,
    init_schema,
    make_engine,
    replace_products,
    upsert_prices,
    upsert_products,
)

__all__ = [
    "Catalog",
    "CatalogPrice",
    "CatalogProduct",
    "CatalogReadOnly",
    "InvalidPrice",
    "InvalidProduct",
    "default_lookup_key",
    "init_schema",
    "make_engine",
    "metadata",
    "prices",
    "products",
    "replace_products",
    "upsert_prices",
    "upsert_products",
    "validate_price",
    "validate_product",
]
