"""Where catalog products and prices are read from: our tables, or the user's own.

A user with existing product and price tables points the pipeline at them without adopting
our schema, by settings:

- products: RECON_CATALOG_TABLE + RECON_CATALOG_COLUMNS (which of its columns hold our
  fields, e.g. `id=sku,name=title,active=is_live`), or RECON_CATALOG_QUERY (any SELECT
  whose result has our field names as columns);
- prices: RECON_PRICES_TABLE + RECON_PRICES_COLUMNS, or RECON_PRICES_QUERY, the same way
  (fields: the `prices` table's columns; lookup_key, product_id and currency required);
- a product table that holds one price per product (columns mapped to unit_amount,
  currency and recurring_interval, as release 0.1.0's products did) needs no price
  source: each such price is the product's `<id>:default`.

Read-only by default: the pipeline writes into a user's tables only with
RECON_CATALOG_WRITABLE=true, and then only Stripe's edits (the inbox under `stripe_wins` or
`latest_wins`), only into mapped columns of existing rows (`write_back`). It never inserts or
deletes their rows. Our own durable tables, such as the outbox and the ledger, are created
beside them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Select, bindparam, column, literal, literal_column, select, table, text
from sqlalchemy.sql.elements import TextClause

from recon_pipeline.catalog.prices import PRICE_COLUMNS
from recon_pipeline.catalog.products import PRODUCT_COLUMNS
from recon_pipeline.catalog.schema import prices, products
from recon_pipeline.names import DEFAULT_ACCOUNT, SettingsError

# One price per product in the product table itself (release 0.1.0's shape): it becomes `<id>:default`.
LEGACY_PRICE_FIELDS = ("unit_amount", "currency", "recurring_interval")
FIELDS = (*PRODUCT_COLUMNS, *LEGACY_PRICE_FIELDS)
REQUIRED = ("id", "name")
DEFAULTS: dict[str, Any] = {name: None for name in FIELDS if name not in REQUIRED} | {"active": True, "account": DEFAULT_ACCOUNT}
PRICE_FIELDS = PRICE_COLUMNS
PRICE_REQUIRED = ("lookup_key", "product_id", "currency")
PRICE_DEFAULTS: dict[str, Any] = {name: None for name in PRICE_FIELDS if name not in PRICE_REQUIRED} | {"active": True, "billing_scheme": "per_unit"}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class CatalogSourceError(SettingsError):
    """A catalog source setting that cannot work; the message names the setting and the value."""


@dataclass(frozen=True)
class Rows:
    """One kind of row (products or prices) read from the user's table or query."""

    kind: str  # "CATALOG" or "PRICES": the settings are RECON_<kind>_TABLE, _COLUMNS, _QUERY
    fields: tuple[str, ...]
    required: tuple[str, ...]
    defaults: Mapping[str, Any]
    key: str  # the field rows are ordered by
    table: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None

    @property
    def is_set(self) -> bool:
        return self.table is not None or self.query is not None

    @property
    def columns_setting(self) -> str:
        """The column mapping as RECON_<kind>_COLUMNS writes it."""
        return ",".join(f"{ours}={theirs}" for ours, theirs in self.columns.items())

    def describe(self) -> str:
        if self.query:
            return f"your query (RECON_{self.kind}_QUERY)"
        return f"your table {self.table!r} ({self.columns_setting})"

    def select(self, where: str, ids: list[str] | None, only: tuple[str, ...] | None = None) -> Select | TextClause:
        """A query returning our field names as columns (those `only`, from a table), rows with `where` in `ids` (None: all)."""
        if self.query:
            sql = f"SELECT * FROM ({self.query}) catalog_source"
            if ids is not None:
                sql += f" WHERE catalog_source.{where} IN :ids"
                return text(f"{sql} ORDER BY catalog_source.{self.key}").bindparams(bindparam("ids", expanding=True, value=ids))
            return text(f"{sql} ORDER BY catalog_source.{self.key}")
        assert self.table is not None
        schema, _, name = self.table.rpartition(".")
        source = table(name, *(column(c) for c in self.columns.values()), schema=schema or None)
        picked = [
            source.c[self.columns[f]].label(f) if f in self.columns else (literal(self.defaults[f]).label(f) if self.defaults[f] is not None else literal_column("NULL").label(f))
            for f in self.fields
            if only is None or f in only
        ]
        query = select(*picked).order_by(source.c[self.columns[self.key]])
        return query.where(source.c[self.columns[where]].in_(ids)) if ids is not None else query


def _rows(kind: str, fields: tuple[str, ...], required: tuple[str, ...], defaults: Mapping[str, Any], key: str, table_name: str | None, columns: str | None, query: str | None) -> Rows:
    base = Rows(kind, fields, required, defaults, key)
    if query and table_name:
        raise CatalogSourceError(f"set either RECON_{kind}_QUERY or RECON_{kind}_TABLE, not both")
    if query:
        if not query.lstrip().lower().startswith(("select", "with")):
            raise CatalogSourceError(f"RECON_{kind}_QUERY={query[:60]!r} must be a SELECT (or WITH ... SELECT) query")
        return Rows(kind, fields, required, defaults, key, query=query.strip().rstrip(";"))
    if not table_name:
        if columns:
            raise CatalogSourceError(f"RECON_{kind}_COLUMNS is set but RECON_{kind}_TABLE is not; name the table too")
        return base
    if not _IDENTIFIER.match(table_name):
        raise CatalogSourceError(f"RECON_{kind}_TABLE={table_name!r} is not a table name (letters, digits, _ and one optional schema.)")
    return Rows(kind, fields, required, defaults, key, table=table_name, columns=parse_columns(columns or "", kind, fields, required))


def product_rows(table_name: str | None = None, columns: str | Mapping[str, str] | None = None, query: str | None = None) -> Rows:
    return _rows("CATALOG", FIELDS, REQUIRED, DEFAULTS, "id", table_name, _setting(columns), query)


def price_rows(table_name: str | None = None, columns: str | Mapping[str, str] | None = None, query: str | None = None) -> Rows:
    return _rows("PRICES", PRICE_FIELDS, PRICE_REQUIRED, PRICE_DEFAULTS, "lookup_key", table_name, _setting(columns), query)


def _setting(columns: str | Mapping[str, str] | None) -> str | None:
    if columns is None or isinstance(columns, str):
        return columns
    return ",".join(f"{ours}={theirs}" for ours, theirs in columns.items())


@dataclass(frozen=True)
class CatalogSource:
    """Products and prices: from our tables (nothing set), or from the user's own."""

    products: Rows = field(default_factory=product_rows)
    prices: Rows = field(default_factory=price_rows)
    writable: bool = False
    """RECON_CATALOG_WRITABLE: Stripe's edits may be written into the user's tables (mapped columns only)."""

    def __post_init__(self) -> None:
        if self.prices.is_set and not self.products.is_set:
            raise CatalogSourceError("RECON_PRICES_TABLE/RECON_PRICES_QUERY is for your own catalog: set RECON_CATALOG_TABLE or RECON_CATALOG_QUERY too")
        if self.writable and (self.products.query or self.prices.query):
            raise CatalogSourceError(
                "RECON_CATALOG_WRITABLE=true needs tables to write into, and a *_QUERY is a query: map your tables instead (RECON_CATALOG_TABLE/_COLUMNS, RECON_PRICES_TABLE/_COLUMNS)."
            )

    @property
    def is_own_schema(self) -> bool:
        return not self.products.is_set

    @property
    def table(self) -> str | None:
        return self.products.table

    @property
    def query(self) -> str | None:
        return self.products.query

    @property
    def columns_setting(self) -> str:
        return self.products.columns_setting

    def describe(self) -> str:
        """Where products (and prices) are read from, in words."""
        if self.is_own_schema:
            return "the catalog's own products and prices tables"
        if self.prices.is_set:
            return f"{self.products.describe()}; prices from {self.prices.describe()}"
        return self.products.describe()

    @classmethod
    def from_settings(
        cls,
        table_name: str | None = None,
        columns: str | None = None,
        query: str | None = None,
        prices_table: str | None = None,
        prices_columns: str | None = None,
        prices_query: str | None = None,
        writable: bool = False,
    ) -> CatalogSource:
        return cls(product_rows(table_name, columns, query), price_rows(prices_table, prices_columns, prices_query), writable)

    def select(self, ids: Iterable[str] | None = None, only: tuple[str, ...] | None = None) -> Select | TextClause:
        """Products, with our field names as columns (`only` those, where the source can narrow): all, or the given ids."""
        wanted = None if ids is None else [str(i) for i in ids]
        if self.is_own_schema:
            columns = products.c if only is None else [products.c[name] for name in only]
            query = select(*columns).order_by(products.c.id)
            return query.where(products.c.id.in_(wanted)) if wanted is not None else query
        return self.products.select("id", wanted, only)

    def select_prices(self, product_ids: Iterable[str] | None = None) -> Select | TextClause | None:
        """Prices of the given products (None: all), or None when prices come from the product rows."""
        wanted = None if product_ids is None else [str(i) for i in product_ids]
        if self.is_own_schema:
            query = select(prices).order_by(prices.c.lookup_key)
            return query.where(prices.c.product_id.in_(wanted)) if wanted is not None else query
        if self.prices.is_set:
            return self.prices.select("product_id", wanted)
        return None


def parse_columns(spec: str, kind: str = "CATALOG", fields: tuple[str, ...] = FIELDS, required: tuple[str, ...] = REQUIRED) -> dict[str, str]:
    """`id=sku,name=title` -> {"id": "sku", "name": "title"}, checked."""
    mapping: dict[str, str] = {}
    setting = f"RECON_{kind}_COLUMNS"
    for part in filter(None, (p.strip() for p in spec.split(","))):
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not theirs:
            raise CatalogSourceError(f"{setting} entry {part!r} must look like field=column, e.g. {required[0]}=sku")
        if ours not in fields:
            raise CatalogSourceError(f"{setting} names unknown field {ours!r}; fields are {', '.join(fields)}")
        if not _IDENTIFIER.match(theirs):
            raise CatalogSourceError(f"{setting}: {theirs!r} (for {ours}) is not a column name")
        mapping[ours] = theirs
    missing = [f for f in required if f not in mapping]
    if missing:
        raise CatalogSourceError(f"{setting} must map {', '.join(missing)} (e.g. {','.join(f'{f}=...' for f in required)})")
    return mapping
