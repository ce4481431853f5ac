"""Every write of catalog rows: the application's changes with their outbox rows, and Stripe's.

The transactional outbox: a change made in the catalog is committed together with the
record that it must reach Stripe (`enqueue`), or not at all, so no change is lost between
the database and the API, whatever crashes or outages happen. The outbox worker pushes it
later, at a controlled rate, with retries.

Changes that come *from* Stripe (the inbox under `stripe_wins`/`latest_wins`, or an orphan
adopted by repair) are written here too, without an outbox row: they must not be pushed
back. A catalog the pipeline only reads (the user's own table or query) is never written:
each function refuses it with CatalogReadOnly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from recon_pipeline.catalog.schema import OutboxStatus, outbox, products
from recon_pipeline.catalog.store import Catalog, CatalogProduct, InvalidProduct, upsert_products, validate_product

UPDATABLE = ("name", "description", "active", "metadata")
PRICE_FIELDS = ("unit_amount", "currency", "recurring_interval")
PRODUCT_FIELDS = ("id", "name", "description", "active", "metadata", *PRICE_FIELDS)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def enqueue(conn: Connection, product_id: str, change: str, fields: Mapping[str, Any]) -> None:
    """The one way a row enters the outbox: in the caller's transaction, ready at once."""
    now = _now()
    conn.execute(
        insert(outbox).values(
            product_id=product_id,
            change=change,
            fields=dict(fields),
            created_at=now,
            status=OutboxStatus.PENDING,
            attempts=0,
            next_attempt_at=now,
        )
    )


def _current(conn: Connection, product_id: str) -> CatalogProduct:
    row = conn.execute(select(products).where(products.c.id == product_id)).mappings().first()
    if row is None:
        raise InvalidProduct(f"product {product_id!r} is not in the catalog; create it first")
    return CatalogProduct(**{k: row[k] for k in PRODUCT_FIELDS})


def create_product(catalog: Catalog, product: CatalogProduct) -> None:
    """Add a product to the catalog and queue it for Stripe."""
    catalog.require_writable(f"creating product {product.id!r}")
    validate_product(product)
    with catalog.engine.begin() as conn:
        if conn.execute(select(products.c.id).where(products.c.id == product.id)).first():
            raise InvalidProduct(f"product {product.id!r} already exists; use update_product")
        conn.execute(insert(products).values(product.as_row(_now())))
        enqueue(conn, product.id, "create", {"name": product.name})


def _change(catalog: Catalog, product_id: str, change: str, values: dict[str, Any]) -> bool:
    catalog.require_writable(f"changing product {product_id!r}")
    with catalog.engine.begin() as conn:
        current = _current(conn, product_id)
        candidate = CatalogProduct(**{**current.__dict__, **values})
        validate_product(candidate)
        before = {k: getattr(current, k) for k in values}
        if before == values:
            return False  # nothing changes: nothing to push
        conn.execute(update(products).where(products.c.id == product_id).values(**values, updated_at=_now()))
        enqueue(conn, product_id, change, {k: {"before": before[k], "after": v} for k, v in values.items()})
        return True


def update_product(catalog: Catalog, product_id: str, **fields: Any) -> bool:
    """Change any of name, description, active, metadata, and queue the change; False when nothing changed."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise InvalidProduct(f"cannot update {sorted(unknown)} of {product_id!r}: updatable fields are {', '.join(UPDATABLE)} (prices: change_price)")
    return _change(catalog, product_id, "update", fields)


def archive_product(catalog: Catalog, product_id: str) -> bool:
    """Archive a product (products are archived, never deleted) and queue it."""
    return _change(catalog, product_id, "archive", {"active": False})


def change_price(catalog: Catalog, product_id: str, unit_amount: int | None, currency: str | None, recurring_interval: str | None = None) -> bool:
    """Set a product's price; in Stripe this becomes a new Price (prices are immutable)."""
    return _change(
        catalog,
        product_id,
        "change_price",
        {"unit_amount": unit_amount, "currency": currency.lower() if currency else None, "recurring_interval": recurring_interval},
    )


# -- changes that come from Stripe: never queued back -----------------------------------------


def take_from_stripe(catalog: Catalog, conn: Connection, product_id: str, values: Mapping[str, Any]) -> None:
    """Write Stripe's values of some fields into a catalog product, in the caller's transaction."""
    catalog.require_writable(f"taking Stripe's values of {sorted(values)} for {product_id!r}")
    conn.execute(update(products).where(products.c.id == product_id).values(**values, updated_at=_now()))


def adopt_from_stripe(catalog: Catalog, items: Iterable[CatalogProduct], conn: Connection | None = None) -> int:
    """Add products that exist only in Stripe to the catalog, as they are there."""
    items = list(items)
    catalog.require_writable(f"adopting {', '.join(repr(i.id) for i in items[:3])}")
    if conn is None:
        return upsert_products(catalog.engine, items)
    for item in items:
        validate_product(item)
        conn.execute(insert(products).values(item.as_row(_now())))
    return len(items)
