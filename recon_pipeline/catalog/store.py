"""Reads and writes of the local catalog.

Writes validate every row first and commit in one transaction, so bad input is refused
whole with a message naming the value, and nothing is half-written.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, DateTime, Engine, Integer, MetaData, RowMapping, String, Table, create_engine, delete, event, update
from sqlalchemy.dialects import postgresql, sqlite

from recon_pipeline.catalog.capture import quiet
from recon_pipeline.catalog.prices import CatalogPrice, InvalidPrice, default_lookup_key, validate_price
from recon_pipeline.catalog.products import CatalogProduct, validate_product
from recon_pipeline.catalog.quarantine import sold_in
from recon_pipeline.catalog.schema import prices as price_table
from recon_pipeline.catalog.schema import products
from recon_pipeline.catalog.source import DEFAULTS, PRICE_DEFAULTS, PRICE_FIELDS, CatalogSource, CatalogSourceError
from recon_pipeline.names import DEFAULT_ACCOUNT, SettingsError

CHUNK_ROWS = 10_000  # rows a streamed catalog read holds at once (canonicalised and dropped chunk by chunk); 50,000 cost 140 MiB more at 300,000 prices


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
    cursor.execute("PRAGMA busy_timeout=10000")  # first: switching to WAL itself waits for a writer's lock
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.close()


def init_schema(engine: Engine, with_products: bool = True) -> None:
    """Bring the catalog's schema to the newest migrations (safe to run any number of times,
    and from several processes at once: Dagster runs steps in parallel processes).

    `with_products`: our own `products` table too (not with a user's own catalog).
    """
    from recon_pipeline.catalog.migrate import upgrade

    upgrade(engine, with_products)


def replace_products(engine: Engine, items: Iterable[CatalogProduct], prices: Iterable[CatalogPrice] = ()) -> int:
    """Make the catalog exactly these products and prices (demo and benchmark seeding)."""
    items, prices = list(items), list(prices)
    _check_products_of(prices, {item.id for item in items})
    with engine.begin() as conn, quiet(conn):
        conn.execute(delete(price_table))
        conn.execute(delete(products))
    count = upsert_products(engine, items)
    upsert_prices(engine, prices)
    return count


def _check_products_of(prices: Iterable[CatalogPrice], product_ids: set[str]) -> None:
    for price in prices:
        if price.product_id not in product_ids:
            raise InvalidPrice(f"price {price.lookup_key!r}: product_id={price.product_id!r} is not a catalog product; add the product first")


def _upsert(engine: Engine, table: Table, key: str, rows: list[dict[str, Any]]) -> int:
    """Insert or update rows by their key, in one transaction."""
    if not rows:
        return 0
    dialect = engine.dialect.name
    if dialect not in ("sqlite", "postgresql"):
        raise NotImplementedError(f"catalog writes support SQLite and PostgreSQL, not {dialect}")
    insert = sqlite.insert(table) if dialect == "sqlite" else postgresql.insert(table)
    stmt = insert.on_conflict_do_update(index_elements=[table.c[key]], set_={c.name: insert.excluded[c.name] for c in table.columns if c.name != key})
    with engine.begin() as conn, quiet(conn):
        for start in range(0, len(rows), 1000):
            conn.execute(stmt, rows[start : start + 1000])
    return len(rows)


def upsert_products(engine: Engine, items: Iterable[CatalogProduct], now: dt.datetime | None = None) -> int:
    """Insert or update products in one transaction, after validating every one of them."""
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for item in items:
        validate_product(item)
        rows.append(item.as_row(now))
    return _upsert(engine, products, "id", rows)


def upsert_prices(engine: Engine, items: Iterable[CatalogPrice], now: dt.datetime | None = None) -> int:
    """Insert or update prices in one transaction, after validating every one of them."""
    now = now or dt.datetime.now(dt.UTC)
    rows = []
    for item in items:
        validate_price(item)
        rows.append(item.as_row(now))
    return _upsert(engine, price_table, "lookup_key", rows)


class CatalogReadOnly(SettingsError):
    """A write into a catalog the pipeline only reads (the user's own table or query)."""


@dataclass(frozen=True)
class Catalog:
    """The catalog database, and where its products are read from.

    Every reader and writer of catalog rows goes through this: the source says whether
    products come from our `products` table or from the user's own table or query
    (`source.py`); a catalog that is the user's own is only read, or, with
    RECON_CATALOG_WRITABLE=true, takes Stripe's edits into its mapped columns (`write_back`).
    """

    engine: Engine
    source: CatalogSource = field(default_factory=CatalogSource)
    writer: str = "api"
    """Who edits through it, as the audit trail names them: `api` (an application), `command` (recon-pipeline's commands)."""

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

        for rows, read in ((self.source.products, lambda: self.rows(ids=[])), (self.source.prices, lambda: self.price_rows(product_ids=[]))):
            try:
                read()
            except DBAPIError as error:
                reason = str(error.orig).strip().splitlines()[0] if error.orig else type(error).__name__
                if rows.query:
                    raise CatalogSourceError(f"RECON_{rows.kind}_QUERY cannot be run on the catalog database: {reason}; check the query.") from None
                raise CatalogSourceError(
                    f"RECON_{rows.kind}_TABLE={rows.table!r} with RECON_{rows.kind}_COLUMNS={rows.columns_setting!r} cannot be read: {reason}; check the table's name and the column mapping."
                ) from None

    @property
    def writable(self) -> bool:
        """Whether Stripe's edits may be written into the catalog's rows: our own tables, or the
        user's with RECON_CATALOG_WRITABLE=true (mapped columns of existing rows only)."""
        return self.source.is_own_schema or self.source.writable

    def _yours(self) -> str:
        return f"your own {'query' if self.source.query else 'table ' + repr(self.source.table)} (RECON_CATALOG_TABLE / RECON_CATALOG_QUERY)"

    def require_writable(self, what: str) -> None:
        """Raise CatalogReadOnly, saying what would have written and what to set, unless Stripe's edits may be written."""
        if not self.writable:
            fix = "set RECON_CATALOG_WRITABLE=true to allow it (mapped columns only)" if self.source.table else "a query cannot be written into"
            raise CatalogReadOnly(f"{what} would write into the catalog, but the catalog is {self._yours()}, which the pipeline only reads; {fix}.")

    def require_own_tables(self, what: str) -> None:
        """Raise CatalogReadOnly unless the catalog is our own tables: the pipeline never inserts,
        deletes or edits rows of the user's tables (only writes Stripe's edits back, when allowed)."""
        if not self.source.is_own_schema:
            raise CatalogReadOnly(f"{what} would add or edit rows of the catalog, but the catalog is {self._yours()}: rows there are added and edited by your application only.")

    def write_back(self, conn: Connection, kind: str, key: str, values: Mapping[str, Any]) -> int:
        """Write values (by our field names) into one product (`kind` "product", by id) or price
        ("price", by lookup key) row, in the caller's transaction; returns the rows written.

        Our own tables take every field. The user's take only the fields their mapping names,
        converted to their columns' types (a boolean into an integer column, JSON into text),
        and their mapped `updated_at` is set to now."""
        now = dt.datetime.now(dt.UTC)
        if self.source.is_own_schema:
            table, column = (products, products.c.id) if kind == "product" else (price_table, price_table.c.lookup_key)
            return conn.execute(update(table).where(column == key).values(**values, updated_at=now)).rowcount
        rows = self.source.products if kind == "product" else self.source.prices
        if rows.table is None:
            return 0  # prices kept in the product rows (one per product): not written back
        schema, _, name = rows.table.rpartition(".")
        theirs = Table(name, MetaData(), schema=schema or None, autoload_with=conn)
        wanted = {**values, "updated_at": now} if "updated_at" in rows.columns else dict(values)
        mapped = {rows.columns[f]: _as_column_value(theirs.c[rows.columns[f]], v) for f, v in wanted.items() if f in rows.columns}
        if not mapped:
            return 0
        return conn.execute(update(theirs).where(theirs.c[rows.columns[rows.key]] == key).values(mapped)).rowcount

    def _read(self, query, defaults: Mapping[str, Any]) -> pd.DataFrame:
        with self.engine.connect() as conn:
            result = conn.execute(query)
            frame = pd.DataFrame(result.fetchall(), columns=list(result.keys()))
        return _with_defaults(frame, defaults)

    def _read_chunks(self, query, defaults: Mapping[str, Any], key: str, size: int) -> Iterator[pd.DataFrame]:
        """The query's rows (ordered by `key`) in frames of about `size` rows, streamed from the
        database; the rows of one key are never split between two frames, so a duplicate is
        seen whole in one. Always at least one frame, empty for no rows."""
        with self.engine.connect().execution_options(stream_results=True, max_row_buffer=size) as conn:
            result = conn.execute(query)
            columns = list(result.keys())
            held = pd.DataFrame(columns=columns)
            sent = False
            for part in result.partitions(size):
                frame = pd.concat([held, pd.DataFrame(part, columns=columns)], ignore_index=True) if len(held) else pd.DataFrame(part, columns=columns)
                held_back = _last_key_rows(frame[key])
                held, frame = frame[held_back].reset_index(drop=True), frame[~held_back].reset_index(drop=True)
                if len(frame):
                    sent = True
                    yield _with_defaults(frame, defaults)
            if len(held) or not sent:
                yield _with_defaults(held, defaults)

    def row_chunks(self, size: int | None = None) -> Iterator[pd.DataFrame]:
        """Every catalog product, as `rows()` gives them, in frames of about `size` rows (a product in one)."""
        if self._prices_in_product_rows and "default_price" not in self.source.products.columns:
            yield self.rows()  # a user's table of one price per product: read whole, as rows() derives each default price
            return
        yield from self._read_chunks(self.source.select(None), DEFAULTS, "id", size or CHUNK_ROWS)

    def price_row_chunks(self, size: int | None = None) -> Iterator[pd.DataFrame]:
        """Every catalog price, as `price_rows()` gives them, in frames of about `size` rows (a lookup key in one)."""
        query = self.source.select_prices(None)
        if query is None:
            yield self.price_rows()  # prices in the product rows: derived from them, one frame
            return
        yield from self._read_chunks(query, PRICE_DEFAULTS, "lookup_key", size or CHUNK_ROWS)

    def rows(self, ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Catalog products as a DataFrame (one row per product, ordered by id): all, or the given ids.

        Columns are our field names, whatever the source (`source.FIELDS`). A product table
        that holds one price per product names it as its default price, `<id>:default`.
        """
        frame = self._read(self.source.select(None if ids is None else [str(i) for i in ids]), DEFAULTS)
        if self._prices_in_product_rows and "default_price" not in self.source.products.columns:
            priced = frame["unit_amount"].notna() & frame["id"].notna()
            frame["default_price"] = frame["id"].astype(object).map(lambda i: default_lookup_key(str(i))).where(priced, None)
        return frame

    @property
    def _prices_in_product_rows(self) -> bool:
        """A user's product table with one price per product, and no price source of its own."""
        return not self.source.is_own_schema and not self.source.prices.is_set

    def price_rows(self, product_ids: Iterable[str] | None = None) -> pd.DataFrame:
        """Catalog prices as a DataFrame (one row per price, ordered by lookup key): all, or those of the given products.

        Columns are the `prices` table's, whatever the source (`source.PRICE_FIELDS`).
        """
        ids = None if product_ids is None else [str(i) for i in product_ids]
        query = self.source.select_prices(ids)
        if query is not None:
            return self._read(query, PRICE_DEFAULTS)
        products_frame = self.rows(ids)
        priced = products_frame[products_frame["unit_amount"].notna() & products_frame["id"].notna()]
        interval = priced["recurring_interval"].where(priced["recurring_interval"].notna() & (priced["recurring_interval"] != ""), None)
        frame = pd.DataFrame(
            {
                "lookup_key": priced["id"].astype(object).map(lambda i: default_lookup_key(str(i))),
                "product_id": priced["id"].astype(object).map(str),
                "currency": priced["currency"],
                "unit_amount": priced["unit_amount"],
                "recurring_interval": interval,
                "recurring_interval_count": interval.map(lambda i: 1 if i else None).astype(object),
                "recurring_usage_type": interval.map(lambda i: "licensed" if i else None).astype(object),
                "updated_at": priced["updated_at"],
            }
        )
        for name, default in PRICE_DEFAULTS.items():
            if name not in frame.columns:
                frame[name] = default
        return frame[list(PRICE_FIELDS)].sort_values("lookup_key", ignore_index=True)

    def row(self, conn: Connection, product_id: str) -> RowMapping | None:
        """One product's row, read through the source inside the caller's transaction."""
        return conn.execute(self.source.select([product_id])).mappings().first()

    def product_accounts(self) -> pd.DataFrame:
        """Every product's id and account, and nothing else: a narrow read (two columns) for what
        one account's run needs to know of the others', once `rows()` has been read for its own."""
        frame = self._read(self.source.select(only=("id", "account")), {"account": DEFAULT_ACCOUNT})
        frame = frame[frame["id"].notna()]
        return pd.DataFrame({"id": frame["id"].astype(str), "account": sold_in(frame)})

    def sold_elsewhere(self, account: str) -> set[str]:
        """The ids of the products sold in another Stripe account than `account`: in that account's
        Stripe they are neither ours to write nor orphans to archive or adopt."""
        frame = self.product_accounts()
        return set(frame.loc[frame["account"] != account, "id"])

    def accounts_of(self, ids: Iterable[str]) -> dict[str, str]:
        """{product id: the Stripe account it is sold in} for those of the ids the catalog has."""
        frame = self.rows([str(i) for i in ids])
        frame = frame[frame["id"].notna()]
        return dict(zip(frame["id"].astype(str), sold_in(frame), strict=True))


def _with_defaults(frame: pd.DataFrame, defaults: Mapping[str, Any]) -> pd.DataFrame:
    for name, default in defaults.items():  # a query may leave optional fields out
        if name not in frame.columns:
            frame[name] = default
    return frame


def _last_key_rows(keys: pd.Series) -> pd.Series:
    """The rows at the end of an ordered frame that share its last key (compared as a
    case-insensitive collation would: those may come in any order among themselves)."""
    if not len(keys):
        return pd.Series(False, index=keys.index)
    folded = keys.map(lambda k: None if k is None or k is pd.NA or (isinstance(k, float) and pd.isna(k)) else str(k).casefold())
    last = folded.iloc[-1]
    same = (folded.isna() if last is None else folded == last).to_numpy()
    other = np.flatnonzero(~same)
    start = other[-1] + 1 if len(other) else 0  # only the run at the end: an equal key further up is another group
    tail = np.zeros(len(keys), dtype=bool)
    tail[start:] = True
    return pd.Series(tail, index=keys.index)


def _as_column_value(column: Any, value: Any) -> Any:
    """One of our values as the user's column holds it."""
    if isinstance(value, bool) and isinstance(column.type, Integer):
        return int(value)
    if isinstance(value, dict | list) and isinstance(column.type, String):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, dt.datetime) and isinstance(column.type, DateTime) and not column.type.timezone:
        return value.replace(tzinfo=None)
    return value


def of_account(rows: pd.DataFrame, price_rows: pd.DataFrame, account: str | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Catalog product rows and price rows of one Stripe account (None: all of them)."""
    if account is None:
        return rows, price_rows
    mine = rows[sold_in(rows) == account].reset_index(drop=True)
    ids = set(mine["id"].dropna().astype(str))
    return mine, price_rows[price_rows["product_id"].astype(str).isin(ids)].reset_index(drop=True)
