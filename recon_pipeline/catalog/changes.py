"""Every write of catalog rows: the application's changes with their outbox rows, and Stripe's.

The transactional outbox: a change made in the catalog is committed together with the
record that it must reach Stripe (`enqueue`), or not at all, so no change is lost between
the database and the API, whatever crashes or outages happen. The outbox worker pushes it
later, at a controlled rate, with retries.

Each edit is audited too (actor `catalog`, by `catalog.writer`: `command` for
recon-pipeline's commands, `api` for an application calling these functions), and holds
the capture mark (`capture.quiet`), so capture triggers, where installed, do not queue it twice.

Changes that come *from* Stripe (the inbox under `stripe_wins`/`latest_wins`, or an orphan
adopted by repair) are written here too, without an outbox row: they must not be pushed
back (their writes hold the mark as `stripe`). Stripe's edits are written into the user's own
tables too, when RECON_CATALOG_WRITABLE allows it (`Catalog.write_back`); every other function
here needs our own tables. A catalog the pipeline only reads (the user's own table or query) is never written:
each function refuses it with CatalogReadOnly, saying what to set.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from sqlalchemy import Connection, insert, select, update

from recon_pipeline.catalog.audit import record
from recon_pipeline.catalog.capture import quiet
from recon_pipeline.catalog.prices import PRICE_COLUMNS, CatalogPrice, InvalidPrice, default_lookup_key, validate_price
from recon_pipeline.catalog.products import PRODUCT_COLUMNS, CatalogProduct, InvalidProduct, validate_product
from recon_pipeline.catalog.schema import OutboxStatus, outbox, prices, products
from recon_pipeline.catalog.store import Catalog, upsert_prices, upsert_products

UPDATABLE = tuple(c for c in PRODUCT_COLUMNS if c not in ("id", "updated_at"))
PRICE_UPDATABLE = tuple(c for c in PRICE_COLUMNS if c not in ("lookup_key", "product_id", "updated_at"))


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def enqueue(conn: Connection, product_id: str, change: str, fields: Mapping[str, Any], edited_by: str | None = None) -> None:
    """The one way a row enters the outbox from Python: in the caller's transaction, ready at once.

    `edited_by`: who edited the catalog (`api`, `command`), audited here with each field's
    before and after where the change has them; None when the caller audits (the inbox's reverts)."""
    now = _now()
    if edited_by is not None:
        reason = f"{change} by {edited_by}"
        changed = {k: v for k, v in fields.items() if isinstance(v, Mapping) and set(v) == {"before", "after"}}
        for name, values in changed.items():
            record(conn, "catalog", product_id, name, values["before"], values["after"], "edited", reason, None)
        if not changed:
            record(conn, "catalog", product_id, None, None, _plain(fields), "edited", reason, None)
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


def _plain(fields: Mapping[str, Any]) -> Any:
    """A change's details as JSON can hold them."""
    return {k: v for k, v in fields.items() if isinstance(v, str | int | float | bool | list | None)}


def _current(conn: Connection, product_id: str) -> CatalogProduct:
    row = conn.execute(select(products).where(products.c.id == product_id)).mappings().first()
    if row is None:
        raise InvalidProduct(f"product {product_id!r} is not in the catalog; add it first: recon-pipeline catalog add {product_id} --name ...")
    return CatalogProduct(**{k: row[k] for k in PRODUCT_COLUMNS if k != "updated_at"})


def _current_price(conn: Connection, lookup_key: str) -> CatalogPrice:
    row = conn.execute(select(prices).where(prices.c.lookup_key == lookup_key)).mappings().first()
    if row is None:
        raise InvalidPrice(f"price {lookup_key!r} is not in the catalog; add it first (recon-pipeline edit PRODUCT --add-price ...)")
    return CatalogPrice(**{k: row[k] for k in PRICE_COLUMNS if k != "updated_at"})


def price_owner(conn: Connection, lookup_key: str) -> str | None:
    """The product a catalog price belongs to (None: no such price)."""
    return conn.execute(select(prices.c.product_id).where(prices.c.lookup_key == lookup_key)).scalar()


def _check_default(conn: Connection, product_id: str, key: str | None, adding: Iterable[CatalogPrice] = ()) -> None:
    """A product's default price must be one of its own prices (in the catalog, or being added)."""
    if key is None:
        return
    if any(p.lookup_key == key and p.product_id == product_id for p in adding):
        return
    owner = conn.execute(select(prices.c.product_id).where(prices.c.lookup_key == key)).scalar()
    if owner != product_id:
        raise InvalidProduct(f"product {product_id!r}: default_price={key!r} is not a price of this product; add the price first")


def create_product(catalog: Catalog, product: CatalogProduct, with_prices: Iterable[CatalogPrice] = (), conn: Connection | None = None) -> None:
    """Add a product (and its prices) to the catalog and queue it for Stripe."""
    catalog.require_own_tables(f"creating product {product.id!r}")
    validate_product(product)
    items = list(with_prices)
    for price in items:
        validate_price(price)
        if price.product_id != product.id:
            raise InvalidPrice(f"price {price.lookup_key!r}: product_id={price.product_id!r} is not {product.id!r}")
    with edits(catalog, conn) as conn:
        if conn.execute(select(products.c.id).where(products.c.id == product.id)).first():
            raise InvalidProduct(f"product {product.id!r} already exists; use update_product (recon-pipeline catalog edit {product.id} ...)")
        _check_default(conn, product.id, product.default_price, items)
        now = _now()
        conn.execute(insert(products).values(product.as_row(now)))
        for price in items:
            _insert_price(conn, price, now)
        enqueue(conn, product.id, "create", {"name": product.name, "prices": [p.lookup_key for p in items]}, catalog.writer)


def _insert_price(conn: Connection, price: CatalogPrice, now: dt.datetime) -> None:
    if conn.execute(select(prices.c.product_id).where(prices.c.lookup_key == price.lookup_key)).first():
        raise InvalidPrice(f"price {price.lookup_key!r} already exists; lookup keys are unique (change it with --change-price)")
    conn.execute(insert(prices).values(price.as_row(now)))


@contextlib.contextmanager
def edits(catalog: Catalog, conn: Connection | None = None) -> Iterator[Connection]:
    """One transaction for several edits (pass it as `conn=` to each): all of them, with their
    outbox rows, are written, or none. Given `conn`, the caller's transaction is used."""
    if conn is not None:
        with quiet(conn):
            yield conn
        return
    with catalog.engine.begin() as own, quiet(own):
        yield own


def _change(catalog: Catalog, product_id: str, change: str, values: dict[str, Any], conn: Connection | None = None) -> bool:
    catalog.require_own_tables(f"changing product {product_id!r}")
    with edits(catalog, conn) as conn:
        current = _current(conn, product_id)
        candidate = dataclasses.replace(current, **values)
        validate_product(candidate)
        if "default_price" in values:
            _check_default(conn, product_id, values["default_price"])
        before = {k: getattr(current, k) for k in values}
        if before == values:
            return False  # nothing changes: nothing to push
        conn.execute(update(products).where(products.c.id == product_id).values(**values, updated_at=_now()))
        enqueue(conn, product_id, change, {k: {"before": before[k], "after": v} for k, v in values.items()}, catalog.writer)
        return True


def update_product(catalog: Catalog, product_id: str, conn: Connection | None = None, **fields: Any) -> bool:
    """Change any of the product's fields, and queue the change; False when nothing changed."""
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise InvalidProduct(f"cannot update {sorted(unknown)} of {product_id!r}: updatable fields are {', '.join(UPDATABLE)} (prices: add_price, change_price)")
    return _change(catalog, product_id, "update", fields, conn)


def archive_product(catalog: Catalog, product_id: str) -> bool:
    """Archive a product (products are archived, never deleted) and queue it."""
    return _change(catalog, product_id, "archive", {"active": False})


# -- prices ------------------------------------------------------------------------------


def add_price(catalog: Catalog, price: CatalogPrice, default: bool = False, conn: Connection | None = None) -> None:
    """Add a price to a catalog product (and make it the product's default), and queue it."""
    catalog.require_own_tables(f"adding price {price.lookup_key!r}")
    validate_price(price)
    with edits(catalog, conn) as conn:
        _current(conn, price.product_id)
        now = _now()
        _insert_price(conn, price, now)
        if default:
            conn.execute(update(products).where(products.c.id == price.product_id).values(default_price=price.lookup_key, updated_at=now))
        enqueue(conn, price.product_id, "add_price", {"lookup_key": price.lookup_key, "default": default}, catalog.writer)


def change_price(catalog: Catalog, lookup_key: str, conn: Connection | None = None, **fields: Any) -> bool:
    """Change a price's fields and queue it; False when nothing changed.

    In Stripe, a change of terms (amount, currency, interval, tiers...) becomes a new price
    that takes the lookup key; the replaced price is archived. Nothing else is touched.
    """
    catalog.require_own_tables(f"changing price {lookup_key!r}")
    unknown = set(fields) - set(PRICE_UPDATABLE)
    if unknown:
        raise InvalidPrice(f"cannot change {sorted(unknown)} of price {lookup_key!r}: fields are {', '.join(PRICE_UPDATABLE)}")
    if fields.get("currency"):
        fields["currency"] = fields["currency"].lower()
    with edits(catalog, conn) as conn:
        current = _current_price(conn, lookup_key)
        candidate = dataclasses.replace(current, **fields)
        validate_price(candidate)
        before = {k: getattr(current, k) for k in fields}
        if before == fields:
            return False
        conn.execute(update(prices).where(prices.c.lookup_key == lookup_key).values(**fields, updated_at=_now()))
        enqueue(conn, current.product_id, "change_price", {"lookup_key": lookup_key, **{k: {"before": before[k], "after": v} for k, v in fields.items()}}, catalog.writer)
        return True


def archive_price(catalog: Catalog, lookup_key: str, conn: Connection | None = None) -> bool:
    """Archive a price (prices are archived, never deleted) and queue it."""
    return change_price(catalog, lookup_key, conn, active=False)


def set_default_price(catalog: Catalog, product_id: str, conn: Connection | None = None, **terms: Any) -> bool:
    """Set the terms of a product's default price: its default price changes (a new one in
    Stripe, under the same lookup key), or, with none yet, `<id>:default` is added as default."""
    with edits(catalog, conn) as conn:
        key = _current(conn, product_id).default_price
        if key is None:
            add_price(catalog, CatalogPrice(lookup_key=default_lookup_key(product_id), product_id=product_id, **terms), default=True, conn=conn)
            return True
        return change_price(catalog, key, conn, **terms)


# -- changes that come from Stripe: never queued back -----------------------------------------


def take_from_stripe(catalog: Catalog, conn: Connection, product_id: str, values: Mapping[str, Any]) -> None:
    """Write Stripe's values of some fields into a catalog product, in the caller's transaction."""
    catalog.require_writable(f"taking Stripe's values of {sorted(values)} for {product_id!r}")
    with quiet(conn, "stripe"):
        catalog.write_back(conn, "product", product_id, values)


def take_price_from_stripe(catalog: Catalog, conn: Connection, lookup_key: str, values: Mapping[str, Any]) -> None:
    """Write Stripe's values of some fields into a catalog price, in the caller's transaction."""
    catalog.require_writable(f"taking Stripe's values of {sorted(values)} for price {lookup_key!r}")
    with quiet(conn, "stripe"):
        catalog.write_back(conn, "price", lookup_key, values)


def adopt_from_stripe(catalog: Catalog, items: Iterable[CatalogProduct], conn: Connection | None = None) -> int:
    """Add products that exist only in Stripe to the catalog, as they are there."""
    items = list(items)
    catalog.require_own_tables(f"adopting {', '.join(repr(i.id) for i in items[:3])}")
    if conn is None:
        return upsert_products(catalog.engine, items)
    with quiet(conn, "stripe"):
        for item in items:
            validate_product(item)
            conn.execute(insert(products).values(item.as_row(_now())))
    return len(items)


def adopt_prices(catalog: Catalog, items: Iterable[CatalogPrice], conn: Connection | None = None) -> int:
    """Add prices that exist only in Stripe (on catalog products) to the catalog, as they are there."""
    items = list(items)
    catalog.require_own_tables(f"adopting prices {', '.join(repr(i.lookup_key) for i in items[:3])}")
    if conn is None:
        return upsert_prices(catalog.engine, items)
    with quiet(conn, "stripe"):
        for item in items:
            validate_price(item)
            conn.execute(insert(prices).values(item.as_row(_now())))
    return len(items)
