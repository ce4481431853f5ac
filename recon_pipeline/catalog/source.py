"""Where catalog products are read from: our `products` table, or the user's own.

A user with an existing product table points the pipeline at it without adopting our
schema, by settings:

- RECON_CATALOG_TABLE + RECON_CATALOG_COLUMNS: the table, and which of its columns hold
  our fields, e.g. `id=sku,name=title,unit_amount=price_cents,currency=curr,active=is_live`;
- or RECON_CATALOG_QUERY: any SELECT whose result has our field names as columns.

Fields: id and name are required; description, active (default true), metadata (a JSON
object or text), unit_amount, currency, recurring_interval and updated_at are optional.
Reads only: the pipeline never writes to a user's table (our own durable tables, such as
the outbox and the ledger, are created beside it).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import Select, bindparam, column, literal, literal_column, select, table, text
from sqlalchemy.sql.elements import TextClause

from recon_pipeline.catalog.schema import products
from recon_pipeline.settings import SettingsError

FIELDS = ("id", "name", "description", "active", "metadata", "unit_amount", "currency", "recurring_interval", "updated_at")
REQUIRED = ("id", "name")
DEFAULTS = {"description": None, "active": True, "metadata": None, "unit_amount": None, "currency": None, "recurring_interval": None, "updated_at": None}
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class CatalogSourceError(SettingsError):
    """A catalog source setting that cannot work; the message names the setting and the value."""


@dataclass(frozen=True)
class CatalogSource:
    table: str | None = None
    columns: Mapping[str, str] = field(default_factory=dict)
    query: str | None = None

    @property
    def is_own_schema(self) -> bool:
        return self.table is None and self.query is None

    @property
    def columns_setting(self) -> str:
        """The column mapping as RECON_CATALOG_COLUMNS writes it."""
        return ",".join(f"{ours}={theirs}" for ours, theirs in self.columns.items())

    def describe(self) -> str:
        """Where products are read from, in words."""
        if self.query:
            return "your query (RECON_CATALOG_QUERY)"
        if self.table:
            return f"your table {self.table!r} ({self.columns_setting})"
        return "the catalog's own products table"

    @classmethod
    def from_settings(cls, table_name: str | None, columns: str | None, query: str | None) -> CatalogSource:
        if query and table_name:
            raise CatalogSourceError("set either RECON_CATALOG_QUERY or RECON_CATALOG_TABLE, not both")
        if query:
            if not query.lstrip().lower().startswith(("select", "with")):
                raise CatalogSourceError(f"RECON_CATALOG_QUERY={query[:60]!r} must be a SELECT (or WITH ... SELECT) query")
            return cls(query=query.strip().rstrip(";"))
        if not table_name:
            if columns:
                raise CatalogSourceError("RECON_CATALOG_COLUMNS is set but RECON_CATALOG_TABLE is not; name the table too")
            return cls()
        if not _IDENTIFIER.match(table_name):
            raise CatalogSourceError(f"RECON_CATALOG_TABLE={table_name!r} is not a table name (letters, digits, _ and one optional schema.)")
        mapping = parse_columns(columns or "")
        return cls(table=table_name, columns=mapping)

    def select(self, ids: Iterable[str] | None = None) -> Select | TextClause:
        """A query returning our field names as columns (for our table: the table itself)."""
        if self.is_own_schema:
            query = select(products).order_by(products.c.id)
            return query.where(products.c.id.in_(list(ids))) if ids is not None else query
        if self.query:
            sql = f"SELECT * FROM ({self.query}) catalog_source"
            if ids is not None:
                sql += " WHERE catalog_source.id IN :ids"
                return text(sql + " ORDER BY catalog_source.id").bindparams(bindparam("ids", expanding=True, value=[str(i) for i in ids]))
            return text(sql + " ORDER BY catalog_source.id")
        assert self.table is not None  # neither our schema nor a query: a table
        schema, _, name = self.table.rpartition(".")
        source = table(name, *(column(c) for c in self.columns.values()), schema=schema or None)
        picked = [
            source.c[self.columns[f]].label(f) if f in self.columns else (literal(DEFAULTS[f]).label(f) if DEFAULTS[f] is not None else literal_column("NULL").label(f))
            for f in FIELDS
        ]
        query = select(*picked).order_by(source.c[self.columns["id"]])
        return query.where(source.c[self.columns["id"]].in_(list(ids))) if ids is not None else query


def parse_columns(spec: str) -> dict[str, str]:
    """`id=sku,name=title` -> {"id": "sku", "name": "title"}, checked."""
    mapping: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        ours, sep, theirs = part.partition("=")
        ours, theirs = ours.strip(), theirs.strip()
        if not sep or not theirs:
            raise CatalogSourceError(f"RECON_CATALOG_COLUMNS entry {part!r} must look like field=column, e.g. name=title")
        if ours not in FIELDS:
            raise CatalogSourceError(f"RECON_CATALOG_COLUMNS names unknown field {ours!r}; fields are {', '.join(FIELDS)}")
        if not _IDENTIFIER.match(theirs):
            raise CatalogSourceError(f"RECON_CATALOG_COLUMNS: {theirs!r} (for {ours}) is not a column name")
        mapping[ours] = theirs
    missing = [f for f in REQUIRED if f not in mapping]
    if missing:
        raise CatalogSourceError(f"RECON_CATALOG_COLUMNS must map {', '.join(missing)} (e.g. id=sku,name=title)")
    return mapping
