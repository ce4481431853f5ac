"""The catalog's write API for applications: each change and its outbox row in one transaction.

This is the transactional outbox: a change is either committed together with the record
that it must reach Stripe, or not at all, so no change is lost between the database and
the API, whatever crashes or outages happen. The outbox worker pushes it later, at a
controlled rate, with retries.

Changes applied *from* Stripe (the inbox) do not come through here: they must not be
pushed back.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update

from recon_pipeline.catalog.schema import outbox, products
from recon_pipeline.catalog.store import CatalogProduct, InvalidProduct, validate_product

UPDATABLE = ("name", "description", "active", "metadata")
PRICE_FIELDS = ("unit_amount", "currency", "recurring_interval")


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _enqueue(conn: Connection, product_id: str, change: str, fields: dict[str, Any], now: dt.datetime) -> None:
    conn.execute(
        insert(outbox).values(
            product_id=product_id,
            change=change,
            fields=fields,
            created_at=now,
            status="pending",
            attempts=0,
            next_attempt_at=now,
        )
    )


def _current(conn: Connection, product_id: str) -> CatalogProduct:
    row = conn.execute(select(products).where(products.c.id == product_id)).mappings().first()
    if row is None:
        raise InvalidProduct(f"product {product_id!r} is not in the catalog; create it first")
    return CatalogProduct(**{k: row[k] for k in ("id", "name", "description", "active", "metadata", "unit_amount", "currency", "recurring_interval")})


def create_product(engine: Engine, product: CatalogProduct) -> None:
    """Add a product to the catalog and queue it for Stripe."""
    validate_product(product)
    now = _now()
    with engine.begin() as conn:
        if conn.execute(select(products.c.id).where(products.c.id == product.id)).first():
            raise InvalidProduct(f"product {product.id!r} already exists; use update_product")
        conn.execute(insert(products).values(product.as_row(now)))
        _enqueue(conn, product.id, "create", {"name": product.name}, now)


def _change(engine: Engine, product_id: str, change: str, values: dict[str, Any]) -> None:
    now = _now()
    with engine.begin() as conn:
        current = _current(conn, product_id)
        candidate = CatalogProduct(**{**current.__dict__, **values})
        validate_product(candidate)
        before = {k: getattr(current, k) for k in values}
        if before == values:
            return  # nothing changes: nothing to push
        conn.execute(update(products).where(products.c.id == product_id).values(**values, updated_at=now))
        _enqueue(conn, product_id, change, {k: {"before": before[k], "after": v} for k, v in values.items()}, now)


def update_product(engine: Engine, product_id: str, **fields: Any) -> None:
    """Change any of name, description, active, metadata, and queue the change."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise InvalidProduct(f"cannot update {sorted(unknown)} of {product_id!r}: updatable fields are {', '.join(UPDATABLE)} (prices: change_price)")
    _change(engine, product_id, "update", fields)


def archive_product(engine: Engine, product_id: str) -> None:
    """Archive a product (products are archived, never deleted) and queue it."""
    _change(engine, product_id, "archive", {"active": False})


def change_price(engine: Engine, product_id: str, unit_amount: int | None, currency: str | None, recurring_interval: str | None = None) -> None:
    """Set a product's price; in Stripe this becomes a new Price (prices are immutable)."""
    _change(
        engine,
        product_id,
        "change_price",
        {"unit_amount": unit_amount, "currency": currency.lower() if currency else None, "recurring_interval": recurring_interval},
    )
