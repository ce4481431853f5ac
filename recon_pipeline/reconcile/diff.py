"""Drift between the catalog and Stripe, computed in DuckDB; no Dagster.

`diff_catalog(local, stripe, local_prices, stripe_prices)` takes the canonical frames
(see `frames.py`) and returns one row per discrepancy:

    product_id | lookup_key | kind | field | local_value | stripe_value

Products, matched by id (lookup_key NULL): `missing_in_stripe` (in the catalog, not in
Stripe), `orphan_in_stripe` (active in Stripe, not in the catalog; an archived one is
retired, not drift), `field_mismatch` (one row per differing field; `default_price` as the
default price's lookup key; no drift where the catalog leaves empty a field Stripe cannot
unset: default_price, statement_descriptor, a price's nickname).

Prices, matched by lookup key over the catalog's products: `price_missing_in_stripe`,
`price_orphan_in_stripe` (an active Stripe price of a catalog product without a key the
catalog owns: unmanaged, its id in stripe_value), `price_field_mismatch`.

How: the four sides are Parquet files DuckDB scans (what the snapshot step hands on: only
the columns compared are read, nothing is loaded whole), or frames handed to it as Arrow
tables without a copy (a canonical frame's text columns are Arrow already). Each pair of sides is joined once on its key; the pairs
where any compared field differs are kept (one vectorized pass, the rest dropped at once),
and only those are unfolded into a row per differing field. Missing and orphaned rows are
anti-joins. DuckDB runs the joins on every core and, over DUCKDB_MEMORY (tables.py), spills
to a temporary directory instead of holding more. bench/bench_diff.py measures it against datacompy (and the pandas/Arrow
version this replaced, commit 30cd55b).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, NamedTuple, TypeAlias

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recon_pipeline.fields import COMPARED_FIELDS, KEPT_WHEN_EMPTY, PRICE_COMPARED_FIELDS
from recon_pipeline.reconcile.tables import ParquetTable, duckdb_session

Side: TypeAlias = pd.DataFrame | ParquetTable

MISSING_IN_STRIPE = "missing_in_stripe"
ORPHAN_IN_STRIPE = "orphan_in_stripe"
FIELD_MISMATCH = "field_mismatch"
PRICE_MISSING_IN_STRIPE = "price_missing_in_stripe"
PRICE_ORPHAN_IN_STRIPE = "price_orphan_in_stripe"
PRICE_FIELD_MISMATCH = "price_field_mismatch"
DRIFT_KINDS = (MISSING_IN_STRIPE, ORPHAN_IN_STRIPE, FIELD_MISMATCH, PRICE_MISSING_IN_STRIPE, PRICE_ORPHAN_IN_STRIPE, PRICE_FIELD_MISMATCH)
DRIFT_COLUMNS = ("product_id", "lookup_key", "kind", "field", "local_value", "stripe_value")
PREVIEW_WIDTH = 40  # characters of a value in a preview (the UI's, the CLI's); the tables keep values whole


def shortened(value: object, width: int = PREVIEW_WIDTH) -> object:
    """A value as a preview shows it: text longer than `width` cut, with an ellipsis and its length."""
    if not isinstance(value, str) or len(value) <= width:
        return value
    return f"{value[: width - 12]}… ({len(value)} chars)"


class DuplicateProductIds(ValueError):
    """One side has the same product id (or price lookup key) twice, so matching would be ambiguous."""


BOOLEAN_FIELDS = frozenset({"active"})


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _rendered(column: str, field: str) -> str:
    """SQL: a compared field's value as the drift table shows it: "true"/"false" for a flag, NULL for empty text."""
    return f"CASE WHEN {column} THEN 'true' ELSE 'false' END" if field in BOOLEAN_FIELDS else f"nullif({column}, '')"


def _differs(field: str, left: str, right: str) -> str:
    """SQL: the two values of `field` differ as drift (an empty catalog value of a field Stripe
    cannot unset is not drift)."""
    differs = f"{left} <> {right}"
    return f"({differs} AND {left} <> '')" if field in KEPT_WHEN_EMPTY else differs


def _arrow(side: pd.DataFrame) -> pa.Table:
    """A frame as an Arrow table (its Arrow text columns without a copy), a missing text as "" and a missing flag as false."""
    table = pa.Table.from_pandas(side, preserve_index=False)
    for index, column in enumerate(table.columns):
        if column.null_count and _text_or_flag(column.type):
            table = table.set_column(index, table.field(index), pc.fill_null(column, False if pa.types.is_boolean(column.type) else ""))
    return table


def _text_or_flag(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_boolean(kind)


def _register(con: duckdb.DuckDBPyConnection, name: str, side: Side) -> None:
    """A side as the view `name`, a missing text as "" and a missing flag as false (as `_arrow`)."""
    if isinstance(side, pd.DataFrame):
        con.register(name, _arrow(side))
        return
    empty = {True: "false", False: "''"}  # a missing flag, a missing text
    filled = [
        f"coalesce({_quoted(f.name)}, {empty[pa.types.is_boolean(f.type)]}) AS {_quoted(f.name)}"
        for f in pq.read_schema(side.path)
        if _text_or_flag(f.type)
    ]
    replaced = f" REPLACE ({', '.join(filled)})" if filled else ""
    con.sql(f"CREATE VIEW {name} AS SELECT *{replaced} FROM {side.scan}")


def _columns(con: duckdb.DuckDBPyConnection, name: str) -> set[str]:
    return {row[0] for row in con.sql(f"DESCRIBE {name}").fetchall()}


def _raise_duplicates(con: duckdb.DuckDBPyConnection, table: str, key: str, side: str, what: str) -> None:
    """DuplicateProductIds naming up to five keys `table` holds more than once (Stripe's "" is no key)."""
    dupes = con.sql(f"SELECT {key} FROM {table} WHERE {key} <> '' GROUP BY 1 HAVING count(*) > 1 ORDER BY 1 LIMIT 5").fetchall()
    if dupes:
        found = [row[0] for row in dupes]
        raise DuplicateProductIds(f"{side} has duplicate {what} {found}; make them unique before reconciling (the ids-unique asset checks list them all)")


def _mismatch_rows(con: duckdb.DuckDBPyConnection, local: str, stripe: str, key: str, fields: list[str], kind: str, keyed: bool) -> str:
    """Build the table of matched pairs (on `key`) where any field differs; return the SQL of
    their per-field drift rows."""
    pairs = f"{kind}_pairs"
    both = ", ".join(f"l.{_quoted(f)} AS {_quoted('l_' + f)}, s.{_quoted(f)} AS {_quoted('s_' + f)}" for f in fields)
    any_differs = " OR ".join(_differs(f, f"l.{_quoted(f)}", f"s.{_quoted(f)}") for f in fields) or "false"
    key_column = ", l.lookup_key AS key" if keyed else ""
    con.sql(
        f"CREATE TEMP TABLE {pairs} AS SELECT l.product_id AS product_id{key_column}, {both} "
        f"FROM {local} l JOIN {stripe} s ON s.{key} = l.{key} AND s.{key} <> '' WHERE {any_differs}"
    )
    lookup = "key" if keyed else "NULL"
    return " UNION ALL ".join(
        f"SELECT product_id, {lookup}, '{kind}', '{f}', {_rendered(_quoted('l_' + f), f)}, {_rendered(_quoted('s_' + f), f)} "
        f"FROM {pairs} WHERE {_differs(f, _quoted('l_' + f), _quoted('s_' + f))}"
        for f in fields
    )


# A catalog product whose default price the catalog cannot sync (it is quarantined) keeps
# Stripe's default: its `default_price` counts as unset. One rule, for the diff and the repair plan.
SYNCABLE_DEFAULT = (
    "CASE WHEN coalesce(local_raw.default_price, '') = '' OR local_raw.default_price IN (SELECT lookup_key FROM local_prices) "
    "THEN local_raw.default_price ELSE '' END"
)


class Found(NamedTuple):
    """The drift table, and how many products each side held (Stripe's without those left alone)."""

    drift: pd.DataFrame
    local_count: int
    stripe_count: int


def diff_catalog(local: Side, stripe: Side, local_prices: Side | None = None, stripe_prices: Side | None = None) -> pd.DataFrame:
    """Every discrepancy between the canonical local and Stripe sides, one row each.

    With the price sides, prices too: matched by lookup key, over the catalog's products.
    """
    return find_drift(local, stripe, local_prices, stripe_prices).drift


def find_drift(
    local: Side,
    stripe: Side,
    local_prices: Side | None = None,
    stripe_prices: Side | None = None,
    leave_alone: Iterable[str] = (),
    leave_alone_keys: Iterable[str] = (),
) -> Found:
    """`diff_catalog`, with Stripe's products of `leave_alone` (and their prices), and its prices
    of `leave_alone_keys`, out of the comparison (quarantined in the catalog, or sold in
    another account): neither drift nor orphans."""
    with_prices = local_prices is not None and stripe_prices is not None
    with duckdb_session() as con:  # the drift table is sorted at the end: insertion order need not be kept
        return _find(con, local, stripe, local_prices if with_prices else None, stripe_prices if with_prices else None, set(leave_alone), set(leave_alone_keys))


def _find(
    con: duckdb.DuckDBPyConnection, local: Side, stripe: Side, local_prices: Side | None, stripe_prices: Side | None, held: set[str], held_keys: set[str]
) -> Found:
    with_prices = local_prices is not None and stripe_prices is not None
    _register(con, "local_raw", local)
    _register(con, "stripe_listed", stripe)
    con.register("held", pa.table({"id": pa.array(sorted(held), pa.string())}))
    con.register("held_keys", pa.table({"key": pa.array(sorted(held_keys), pa.string())}))
    con.sql("CREATE VIEW stripe_raw AS SELECT * FROM stripe_listed ANTI JOIN held ON held.id = stripe_listed.product_id")
    both_sides = _columns(con, "local_raw") & _columns(con, "stripe_raw")
    fields = [f for f in COMPARED_FIELDS if f in both_sides]
    if with_prices:
        assert local_prices is not None and stripe_prices is not None
        _register(con, "local_prices", local_prices)
        _register(con, "stripe_prices_listed", stripe_prices)
        con.sql(
            "CREATE VIEW stripe_prices AS SELECT * FROM stripe_prices_listed p "
            "ANTI JOIN held ON held.id = p.product_id ANTI JOIN held_keys ON held_keys.key = p.lookup_key"
        )
    if with_prices and "default_price" in fields:
        con.sql(f"CREATE TEMP VIEW local_side AS SELECT local_raw.* REPLACE ({SYNCABLE_DEFAULT} AS default_price) FROM local_raw")
        # Stripe names the default price by id: as its lookup key (the id stays where that
        # price is not listed or has no key; it never equals a catalog key).
        con.sql(
            "CREATE TEMP VIEW stripe_side AS SELECT p.* REPLACE (coalesce(nullif(k.lookup_key, ''), p.default_price) AS default_price) "
            "FROM stripe_raw p LEFT JOIN stripe_prices k ON k.price_id = p.default_price"
        )
    else:
        con.sql("CREATE TEMP VIEW local_side AS SELECT * FROM local_raw")
        con.sql("CREATE TEMP VIEW stripe_side AS SELECT * FROM stripe_raw")
    _raise_duplicates(con, "local_raw", "product_id", "the catalog", "product ids")
    _raise_duplicates(con, "stripe_raw", "product_id", "Stripe", "product ids")
    parts = [
        f"SELECT l.product_id, NULL, '{MISSING_IN_STRIPE}', NULL, NULL, NULL FROM local_raw l ANTI JOIN stripe_raw s ON s.product_id = l.product_id",
        # An archived Stripe product the catalog does not know is retired, not drift (that is
        # also where the `archive` orphan policy leaves it); only active ones are orphans.
        f"SELECT s.product_id, NULL, '{ORPHAN_IN_STRIPE}', NULL, NULL, NULL FROM stripe_raw s ANTI JOIN local_raw l ON l.product_id = s.product_id WHERE s.active",
    ]
    if fields:
        parts.append(_mismatch_rows(con, "local_side", "stripe_side", "product_id", fields, FIELD_MISMATCH, keyed=False))
    if with_prices:
        _raise_duplicates(con, "local_prices", "lookup_key", "the catalog", "price lookup keys")
        _raise_duplicates(con, "stripe_prices", "lookup_key", "Stripe", "price lookup keys")
        parts += [
            f"SELECT l.product_id, l.lookup_key, '{PRICE_MISSING_IN_STRIPE}', NULL, NULL, NULL FROM local_prices l "
            "ANTI JOIN stripe_prices s ON s.lookup_key = l.lookup_key AND s.lookup_key <> ''",
            # An active Stripe price of a catalog product that holds no key the catalog owns
            # (the prices of a product the catalog does not have go with that product).
            f"SELECT s.product_id, nullif(s.lookup_key, ''), '{PRICE_ORPHAN_IN_STRIPE}', NULL, NULL, s.price_id FROM stripe_prices s "
            "SEMI JOIN local_raw c ON c.product_id = s.product_id ANTI JOIN local_prices l ON l.lookup_key = s.lookup_key WHERE s.active",
            _mismatch_rows(con, "local_prices", "stripe_prices", "lookup_key", list(PRICE_COMPARED_FIELDS), PRICE_FIELD_MISMATCH, keyed=True),
        ]
    union = " UNION ALL ".join(f"({part})" for part in parts)
    names = ", ".join(DRIFT_COLUMNS)
    found = con.sql(
        f"SELECT * FROM ({union}) AS drift({names}) ORDER BY kind, product_id, lookup_key NULLS FIRST, field NULLS FIRST, stripe_value NULLS FIRST"
    ).to_arrow_table()
    ((local_count,),) = con.sql("SELECT count(*) FROM local_raw").fetchall()
    ((stripe_count,),) = con.sql("SELECT count(*) FROM stripe_raw").fetchall()
    if not found.num_rows:
        return Found(empty_drift(), int(local_count), int(stripe_count))
    drift = pd.DataFrame({name: np.array(found.column(name).to_pylist(), dtype=object) for name in DRIFT_COLUMNS})
    return Found(drift, int(local_count), int(stripe_count))


def syncable_defaults(local: pd.DataFrame, local_prices: pd.DataFrame | None) -> pd.DataFrame:
    """Catalog products with `default_price` unset where the catalog cannot sync that price (SYNCABLE_DEFAULT)."""
    if local_prices is None or not len(local) or "default_price" not in local:
        return local
    con = duckdb.connect()
    try:
        con.register("local_raw", _arrow(local[["default_price"]]))
        con.register("local_prices", _arrow(local_prices[["lookup_key"]]))
        column = con.sql(f"SELECT {SYNCABLE_DEFAULT} FROM local_raw").to_arrow_table().column(0)  # in the frame's order
    finally:
        con.close()
    return local.assign(default_price=pd.array(column.to_pandas().to_numpy(dtype=object), dtype=local["default_price"].dtype))


def empty_drift() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in DRIFT_COLUMNS})


def summarize_drift(drift: pd.DataFrame, local_count: int, stripe_count: int) -> dict[str, Any]:
    """Counts per kind and field, products affected and the drift rate (products with drift / all products)."""
    counts = drift["kind"].value_counts()
    by_kind = {kind: int(counts.get(kind, 0)) for kind in DRIFT_KINDS}
    products_total = local_count + by_kind[ORPHAN_IN_STRIPE]
    products_with_drift = int(drift["product_id"].nunique())

    def by_field(kind: str) -> dict[str, int]:
        rows = drift[drift["kind"] == kind]
        return {k: int(v) for k, v in rows["field"].value_counts().sort_index().items()}

    return {
        **by_kind,
        "total": len(drift),
        "products_total": products_total,
        "products_with_drift": products_with_drift,
        "drift_rate": products_with_drift / products_total if products_total else 0.0,
        "field_mismatch_by_field": by_field(FIELD_MISMATCH),
        "price_field_mismatch_by_field": by_field(PRICE_FIELD_MISMATCH),
        "prices_with_drift": int(drift.loc[drift["kind"].str.startswith("price_"), "lookup_key"].fillna(drift["stripe_value"]).nunique()),
        "local_count": local_count,
        "stripe_count": stripe_count,
    }
