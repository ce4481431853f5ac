"""Reads and writes of the local catalog.

Writes validate every row first and commit in one transaction, so bad input is refused
whole with a message naming the value, and nothing is half-written.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import Connection, Engine, RowMapping, create_engine, delete, event
from sqlalchemy.dialects import postgresql, sqlite

from recon_pipeline.catalog.currencies import ISO_4217
from recon_pipeline.catalog.schema import products
from recon_pipeline.catalog.source import DEFAULTS, CatalogSource, CatalogSourceError
from recon_pipeline.settings import SettingsError

INTERVALS = ("day", "week", "month", "year")
# Stripe's metadata limits: 50 keys, keys up to 40 characters, values up to 500.
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500
MAX_NAME_LENGTH = 250


class InvalidProduct(ValueError):
    """A catalog row Stripe would refuse; the message names the product, the field and the value."""


@dataclass(frozen=True)
class CatalogProduct:
    id: str
    name: str
    description: str | None = None
    active: bool = True
    metadata: dict[str, str] = field(default_factory=dict)
    unit_amount: int | None = None
    currency: str | None = None
    recurring_interval: str | None = None
    updated_at: dt.datetime | None = None

    def as_row(self, now: dt.datetime) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "description": self.description,
            "active": self.active,
            "metadata": dict(self.metadata),
            "unit_amount": self.unit_amount,
            "currency": self.currency.lower() if self.currency else None,
            "recurring_interval": self.recurring_interval,
            "updated_at": self.updated_at or now,
        }


def make_engine(url: str) -> Engine:
    """An engine for the catalog URL; a SQLite file's folder is created on first use."""
    if url.startswith("sqlite:///") and not url.startswith("sqlite:///:memory:"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets the Dagster UI read while a run writes; busy_timeout waits instead of failing.
    # Bytes that are not UTF-8 become surrogates instead of failing the whole read, so the
    # one bad row can be quarantined with its reason.
    dbapi_connection.text_factory = lambda raw: raw.decode("utf-8", "surrogateescape")
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def init_schema(engine: Engine, with_products: bool = True) -> None:
    """Bring the catalog's schema to the newest migrations (safe to run any number of times,
    and from several processes at once: Dagster runs steps in parallel processes).

    `with_products`: our own `products` table too (not with a user's own catalog).
    """
    from recon_pipeline.catalog.migrate import upgrade

    upgrade(engine, with_products)


def validate_product(product: CatalogProduct) -> None:
    """Raise InvalidProduct if Stripe would refuse this product or its price."""

    def bad(field_name: str, value: Any, fix: str) -> InvalidProduct:
        return InvalidProduct(f"product {product.id!r}: {field_name}={value!r} {fix}")

    if not isinstance(product.id, str) or not product.id.strip():
        raise InvalidProduct(f"product id {product.id!r} must be a non-empty string")
    for field_name, text_value in _texts(product):
        try:
            text_value.encode("utf-8")
        except UnicodeEncodeError:
            raise bad(field_name, text_value.encode("utf-8", "surrogateescape")[:40], "is not valid UTF-8; fix the bytes in the catalog") from None
    if not isinstance(product.name, str) or not product.name.strip():
        raise bad("name", product.name, "must be a non-empty string")
    if len(product.name) > MAX_NAME_LENGTH:
        raise bad("name", product.name[:40] + "…", f"is longer than {MAX_NAME_LENGTH} characters")
    meta = product.metadata or {}
    if not isinstance(meta, Mapping):
        raise bad("metadata", meta, "must be a mapping of strings")
    if len(meta) > MAX_METADATA_KEYS:
        raise bad("metadata", f"{len(meta)} keys", f"has more than Stripe's {MAX_METADATA_KEYS} keys")
    for key, value in meta.items():
        if len(str(key)) > MAX_METADATA_KEY_LENGTH:
            raise bad("metadata key", key, f"is longer than {MAX_METADATA_KEY_LENGTH} characters")
        if value is not None and len(str(value)) > MAX_METADATA_VALUE_LENGTH:
            raise bad(f"metadata[{key}]", str(value)[:40] + "…", f"is longer than {MAX_METADATA_VALUE_LENGTH} characters")
    if product.unit_amount is not None:
        if isinstance(product.unit_amount, bool) or not isinstance(product.unit_amount, int):
            raise bad("unit_amount", product.unit_amount, "must be a whole number of the currency's smallest unit (e.g. cents)")
        if product.unit_amount < 0:
            raise bad("unit_amount", product.unit_amount, "must not be negative")
        currency = product.currency
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isascii() and currency.isalpha()):
            raise bad("currency", currency, "must be a three-letter ISO currency code such as 'usd'")
        if currency.lower() not in ISO_4217:
            raise bad("currency", currency, "is not an ISO 4217 currency code Stripe knows (e.g. usd, eur, gbp)")
    if product.recurring_interval is not None and product.recurring_interval not in INTERVALS:
        raise bad("recurring_interval", product.recurring_interval, f"must be one of {', '.join(INTERVALS)} or empty")


def _texts(product: CatalogProduct):
    for name in ("id", "name", "description", "currency", "recurring_interval"):
        value = getattr(product, name)
        if isinstance(value, str):
            yield name, value
    for key, value in (product.metadata or {}).items() if isinstance(product.metadata, Mapping) else ():
        yield f"metadata key {str(key)[:20]!r}", str(key)
        if isinstance(value, str):
            yield f"metadata[{str(key)[:20]}]", value


def replace_products(engine: Engine, items: Iterable[CatalogProduct]) -> int:
    """Make the catalog exactly these products (demo and benchmark seeding)."""
    with engine.begin() as conn:
        conn.execute(delete(products))
    return upsert_products(engine, items)


def upsert_products(engine: Engine, items: Iterable[CatalogProduct], now: dt.datetime | None = None) -> int:
    """Insert or update products in one transaction, after validating every one of them."""
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for item in items:
        validate_product(item)
        rows.append(item.as_row(now))
    if not rows:
        return 0
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"catalog writes support SQLite and PostgreSQL, not {dialect}")
    insert = sqlite.insert(products) if dialect == "sqlite" else postgresql.insert(products)
    stmt = insert.on_conflict_do_update(
        index_elements=[products.c.id],
        set_={c.name: insert.excluded[c.name] for c in products.columns if c.name != "id"},
    )
    with engine.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(stmt, rows[start : start + 1000])
    return len(rows)


class CatalogReadOnly(SettingsError):
    """A write into a catalog the pipeline only reads (the user's own table or query)."""


@dataclass(frozen=True)
class Catalog:
    """The catalog database, and where its products are read from.

    Every reader and writer of catalog rows goes through this: the source says whether
    products come from our `products` table or from the user's own table or query
    (`source.py`), and a catalog that is the user's own is never written.
    """

    engine: Engine
    source: CatalogSource = field(default_factory=CatalogSource)

    @classmethod
    def open(cls, url: str, source: CatalogSource | None = None, read_only: bool = False) -> Catalog:
        """The catalog at a SQLAlchemy URL, its schema brought up to date.

        `read_only` (commands that only look): nothing is created or upgraded; a catalog that
        is not there, or not yet initialised, is an error saying so.
        """
        from recon_pipeline.catalog.connect import reachable, require_existing
        from recon_pipeline.catalog.migrate import behind

        source = source or CatalogSource()
        with reachable(url):
            if read_only:
                require_existing(url)
            engine = make_engine(url)
            if not read_only:
                init_schema(engine, with_products=source.is_own_schema)
            elif behind(engine, with_products=source.is_own_schema):
                raise CatalogReadOnly(f"the catalog at {engine.url!r} is not initialised (or older than this release); run `recon-pipeline init` first.")
        return cls(engine, source)

    def check_source(self) -> None:
        """Read no rows through the source, so a missing table or column is said now, by name."""
        from sqlalchemy.exc import DBAPIError

        try:
            self.rows(ids=[])
        except DBAPIError as error:
            reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
            if self.source.query:
                raise CatalogSourceError(f"RECON_CATALOG_QUERY cannot be run on the catalog database: {reason}; check the query.") from None
            raise CatalogSourceError(
                f"RECON_CATALOG_TABLE={self.source.table!r} with RECON_CATALOG_COLUMNS={self.source.columns_setting!r} cannot be read: "
                f"{reason}; check the table's name and the column mapping."
            ) from None

    @property
    def writable(self) -> bool:
        """Only our own `products` table is written; a user's table or query is read-only."""
        return self.source.is_own_schema

    def require_writable(self, what: str) -> None:
        """Raise CatalogReadOnly, saying what would have written, unless the catalog is ours."""
        if not self.writable:
            raise CatalogReadOnly(
                f"{what} would write into the catalog, but the catalog is your own "
                f"{'query' if self.source.query else 'table ' + repr(self.source.table)} "
                "(RECON_CATALOG_TABLE / RECON_CATALOG_QUERY), which the pipeline only reads."
            )

    def rows(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Catalog products as a DataFrame (one row per product, ordered by id): all, or the given ids.

        Columns are our field names, whatever the source (`source.FIELDS`).
        """
        query = self.source.select(None if ids is None else [str(i) for i in ids])
        with self.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        for name, default in DEFAULTS.items():  # a query may leave optional fields out
            if name not in frame.columns:
                frame[name] = default
        return frame

    def row(self, conn: Connection, product_id: str) -> RowMapping | None:
        """One product's row, read through the source inside the caller's transaction."""
        return conn.execute(self.source.select([product_id])).mappings().first()

    def valid_frame(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """The canonical frame of the rows that can be synced (all, or the given ids).

        Every reader that compares or pushes catalog state uses this, so a bad row is skipped
        the same way everywhere (local_products also records why, in `quarantine`).
        """
        from recon_pipeline.catalog.quarantine import split_valid
        from recon_pipeline.reconcile.frames import local_frame

        rows, _ = split_valid(self.rows(ids))
        return local_frame(rows)
