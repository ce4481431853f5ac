"""Drift between the catalog and Stripe: vectorized, plain pandas/numpy, no Dagster.

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

Why it is fast: instead of an outer merge (which copies every column of both sides
into a joined frame), ids are matched once with pandas' hash index on the catalog side
(`Index.get_indexer`; the Stripe side needs no second hash table: its duplicates show
up as a catalog position hit twice), then each field is compared on aligned arrays,
text with Arrow's vectorized kernels (`take` + `not_equal`, several times faster than
comparing Python strings one by one), and only differing positions are materialised.
bench/bench_diff.py measures it against datacompy and a bare outer merge.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from recon_pipeline.fields import COMPARED_FIELDS, KEPT_WHEN_EMPTY, PRICE_COMPARED_FIELDS

MISSING_IN_STRIPE = "missing_in_stripe"
ORPHAN_IN_STRIPE = "orphan_in_stripe"
FIELD_MISMATCH = "field_mismatch"
PRICE_MISSING_IN_STRIPE = "price_missing_in_stripe"
PRICE_ORPHAN_IN_STRIPE = "price_orphan_in_stripe"
PRICE_FIELD_MISMATCH = "price_field_mismatch"
DRIFT_KINDS = (MISSING_IN_STRIPE, ORPHAN_IN_STRIPE, FIELD_MISMATCH, PRICE_MISSING_IN_STRIPE, PRICE_ORPHAN_IN_STRIPE, PRICE_FIELD_MISMATCH)
DRIFT_COLUMNS = ("product_id", "lookup_key", "kind", "field", "local_value", "stripe_value")


class DuplicateProductIds(ValueError):
    """One side has the same product id (or price lookup key) twice, so matching would be ambiguous."""


def _raise_duplicates(side: str, ids: pa.Array | pa.ChunkedArray, what: str = "product ids") -> None:
    index = pd.Index(ids.to_pylist())
    dupes = index[index.duplicated()].unique()[:5].tolist()
    raise DuplicateProductIds(f"{side} has duplicate {what} {dupes}; make them unique before reconciling (the ids-unique asset checks list them all)")


def _text_array(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A text column as Arrow strings (zero-copy when already Arrow-backed and in one chunk), nulls as "".

    A frame built page by page holds its columns in many chunks; they are joined once here,
    since taking rows by position from a chunked array is several times slower."""
    if isinstance(column.dtype, (pd.ArrowDtype, pd.StringDtype)):
        array = pa.chunked_array(pa.array(column.array))
        if array.type != pa.string():
            array = array.cast(pa.string())
        if array.num_chunks > 1:
            array = pa.chunked_array([array.combine_chunks()])
    else:
        array = pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    return pc.fill_null(array, "") if array.null_count else array


def _blank_to_none(values: list) -> list:
    return [None if v == "" else v for v in values]


class _Pairs:
    """Matched rows: local and Stripe positions, ordered by local position (so the local side
    is read in its own order, without a copy when every local row matched)."""

    def __init__(self, local_at: np.ndarray, stripe_at: np.ndarray, local_len: int):
        order = np.argsort(local_at, kind="stable")
        self.local_at, self.stripe_at = local_at[order], stripe_at[order]
        self.whole_local = len(self.local_at) == local_len  # local rows 0..n-1, each matched once
        self._local_index = None if self.whole_local else pa.array(self.local_at)
        self._stripe_index = pa.array(self.stripe_at)

    def local(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        return column if self._local_index is None else column.take(self._local_index)

    def stripe(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        return column.take(self._stripe_index)


def _differing(field: str, local_col: pd.Series, stripe_col: pd.Series, pairs: _Pairs):
    """(positions among the matched pairs where `field` differs, local values, Stripe values)."""
    if field == "active":
        left = local_col.to_numpy(dtype=bool)[pairs.local_at]
        right = stripe_col.to_numpy(dtype=bool)[pairs.stripe_at]
        differs = np.flatnonzero(left != right)
        render = lambda v: "true" if v else "false"
        return differs, [render(v) for v in left[differs]], [render(v) for v in right[differs]]
    left_text = pairs.local(_text_array(local_col))
    right_text = pairs.stripe(_text_array(stripe_col))
    differs = np.flatnonzero(pc.not_equal(left_text, right_text).to_numpy(zero_copy_only=False))
    if not len(differs):
        return differs, [], []
    at = pa.array(differs)
    return differs, _blank_to_none(left_text.take(at).to_pylist()), _blank_to_none(right_text.take(at).to_pylist())


def _match(local_keys: pa.ChunkedArray, stripe_keys: pa.ChunkedArray, what: str, local_pos: np.ndarray | None = None):
    """Match rows by key: (matched pairs, unmatched Stripe positions, local positions missing
    in Stripe). A Stripe key "" never matches. `local_pos`: each Stripe row's local position
    (-1: none), when the caller has it already."""
    if len(pc.unique(local_keys)) != len(local_keys):
        _raise_duplicates("the catalog", local_keys, what)
    if local_pos is None:
        local_pos = _positions(stripe_keys, local_keys)
    matched_stripe = np.flatnonzero(local_pos >= 0)
    matched_local = local_pos[matched_stripe]
    unmatched = np.flatnonzero(local_pos < 0)
    # A catalog position hit twice means a Stripe key repeated; no second hash table needed.
    hits = np.bincount(matched_local, minlength=len(local_keys))
    unmatched_keys = [k for k in stripe_keys.take(pa.array(unmatched)).to_pylist() if k]
    if (len(hits) and hits.max() > 1) or len(set(unmatched_keys)) != len(unmatched_keys):
        _raise_duplicates("Stripe", stripe_keys.filter(pc.not_equal(stripe_keys, "")), what)
    return _Pairs(matched_local, matched_stripe, len(local_keys)), unmatched, np.flatnonzero(hits == 0)


def _positions(stripe_keys: pa.ChunkedArray, local_keys: pa.ChunkedArray) -> np.ndarray:
    """Each Stripe key's position among the local keys, -1 for none (and for "")."""
    found = pc.index_in(stripe_keys, value_set=local_keys)
    return pc.fill_null(pc.if_else(pc.not_equal(stripe_keys, ""), found, None), -1).to_numpy()


def _take(keys: pa.ChunkedArray, positions: np.ndarray) -> list[str]:
    return keys.take(pa.array(positions)).to_pylist()


def _compare(local: pd.DataFrame, stripe: pd.DataFrame, fields, pairs: _Pairs, kind: str, local_keys: pa.ChunkedArray | None) -> list[pd.DataFrame]:
    pieces = []
    local_products = _text_array(local["product_id"])
    for field in fields:
        differs, left, right = _differing(field, local[field], stripe[field], pairs)
        if field in KEPT_WHEN_EMPTY and len(differs):
            # Stripe cannot unset these once set: an empty catalog value leaves Stripe's as it is.
            chosen = np.array([value is not None for value in left], dtype=bool)
            differs, left, right = differs[chosen], [v for v, c in zip(left, chosen, strict=True) if c], [v for v, c in zip(right, chosen, strict=True) if c]
        if len(differs):
            at = pairs.local_at[differs]
            keys = _take(local_keys, at) if local_keys is not None else None
            pieces.append(_rows(_take(local_products, at), kind, field, left, right, keys))
    return pieces


def _with_default_keys(stripe: pd.DataFrame, stripe_prices: pd.DataFrame | None) -> pd.DataFrame:
    """Stripe products with `default_price` as its lookup key (the id kept when it has none)."""
    if stripe_prices is None or not len(stripe) or "default_price" not in stripe:
        return stripe
    ids = _text_array(stripe["default_price"])
    keys = _text_array(stripe_prices["lookup_key"])
    at = pc.index_in(ids, value_set=_text_array(stripe_prices["price_id"]))
    named = pc.take(keys, pc.fill_null(at, 0)) if len(keys) else pa.chunked_array([pa.array([""] * len(ids))])
    # No such price, or a price without a lookup key: the id stays (it never equals a catalog key).
    default = pc.if_else(pc.or_(pc.is_null(at), pc.equal(named, "")), ids, named)
    return stripe.assign(default_price=pd.array(default, dtype=stripe["default_price"].dtype))


def syncable_defaults(local: pd.DataFrame, local_prices: pd.DataFrame | None) -> pd.DataFrame:
    """Catalog products whose default price the catalog cannot sync (it is quarantined) keep
    Stripe's default: their `default_price` counts as unset."""
    if local_prices is None or not len(local) or "default_price" not in local:
        return local
    defaults = _text_array(local["default_price"])
    syncable = pc.or_(pc.equal(defaults, ""), pc.is_in(defaults, value_set=_text_array(local_prices["lookup_key"])))
    if pc.all(syncable).as_py():
        return local
    return local.assign(default_price=pd.array(pc.if_else(syncable, defaults, ""), dtype=local["default_price"].dtype))


def diff_catalog(local: pd.DataFrame, stripe: pd.DataFrame, local_prices: pd.DataFrame | None = None, stripe_prices: pd.DataFrame | None = None) -> pd.DataFrame:
    """Every discrepancy between the canonical local and Stripe frames, one row each.

    With the price frames, prices too: matched by lookup key, over the catalog's products.
    """
    stripe = _with_default_keys(stripe, stripe_prices)
    local = syncable_defaults(local, local_prices)
    local_ids = _text_array(local["product_id"])
    stripe_ids = _text_array(stripe["product_id"])
    pairs, unmatched, missing = _match(local_ids, stripe_ids, "product ids")
    # An archived Stripe product the catalog does not know is retired, not drift (that is
    # also where the `archive` orphan policy leaves it); only active ones are orphans.
    orphans = unmatched[stripe["active"].to_numpy(dtype=bool)[unmatched]]

    pieces: list[pd.DataFrame] = []
    if len(missing):
        pieces.append(_rows(_take(local_ids, missing), MISSING_IN_STRIPE))
    if len(orphans):
        pieces.append(_rows(_take(stripe_ids, orphans), ORPHAN_IN_STRIPE))
    pieces += _compare(local, stripe, [f for f in COMPARED_FIELDS if f in local and f in stripe], pairs, FIELD_MISMATCH, None)
    if local_prices is not None and stripe_prices is not None:
        pieces += _price_drift(local_prices, stripe_prices, local_ids)
    if not pieces:
        return empty_drift()
    drift = pd.concat(pieces, ignore_index=True)
    return drift.sort_values(["kind", "product_id", "lookup_key", "field"], kind="stable", ignore_index=True, na_position="first")


def _price_drift(local: pd.DataFrame, stripe: pd.DataFrame, catalog_products: pa.ChunkedArray) -> list[pd.DataFrame]:
    """Prices by lookup key: missing, unmanaged (orphans) and differing fields."""
    local_keys = _text_array(local["lookup_key"])
    stripe_keys = _text_array(stripe["lookup_key"])
    local_pos = _positions(stripe_keys, local_keys)
    # Stripe prices of the catalog's products, and any price holding a key the catalog owns;
    # the prices of a product the catalog does not have go with that product (an orphan).
    of_catalog = pc.is_in(_text_array(stripe["product_id"]), value_set=catalog_products).to_numpy(zero_copy_only=False)
    irrelevant = ~of_catalog & (local_pos < 0)
    pairs, unmatched, missing = _match(local_keys, stripe_keys, "price lookup keys", local_pos)
    unmatched = unmatched[~irrelevant[unmatched]]
    orphans = unmatched[stripe["active"].to_numpy(dtype=bool)[unmatched]]
    pieces = []
    local_products = _text_array(local["product_id"])
    if len(missing):
        pieces.append(_rows(_take(local_products, missing), PRICE_MISSING_IN_STRIPE, keys=_take(local_keys, missing)))
    if len(orphans):
        stripe_products = _text_array(stripe["product_id"])
        pieces.append(
            _rows(_take(stripe_products, orphans), PRICE_ORPHAN_IN_STRIPE, None, None, _take(_text_array(stripe["price_id"]), orphans), _blank_to_none(_take(stripe_keys, orphans)))
        )
    pieces += _compare(local, stripe, PRICE_COMPARED_FIELDS, pairs, PRICE_FIELD_MISMATCH, local_keys)
    return pieces


def _rows(ids: list[str], kind: str, field: str | None = None, local_values=None, stripe_values=None, keys=None) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "product_id": np.array(ids, dtype=object),
            "lookup_key": np.array(keys, dtype=object) if keys is not None else np.full(n, None, dtype=object),
            "kind": np.full(n, kind, dtype=object),
            "field": np.full(n, field, dtype=object),
            "local_value": local_values if local_values is not None else np.full(n, None, dtype=object),
            "stripe_value": stripe_values if stripe_values is not None else np.full(n, None, dtype=object),
        }
    )


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
