"""Drift between the catalog and Stripe: vectorized, plain pandas/numpy, no Dagster.

`diff_catalog(local, stripe)` takes two canonical frames (see `frames.py`) and returns
one row per discrepancy:

    product_id | kind | field | local_value | stripe_value

kind is `missing_in_stripe` (in the catalog, not in Stripe), `orphan_in_stripe` (active
in Stripe, not in the catalog; an archived one is retired, not drift) or `field_mismatch`
(one row per differing field).

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

from recon_pipeline.reconcile.frames import COMPARED_FIELDS

MISSING_IN_STRIPE = "missing_in_stripe"
ORPHAN_IN_STRIPE = "orphan_in_stripe"
FIELD_MISMATCH = "field_mismatch"
DRIFT_KINDS = (MISSING_IN_STRIPE, ORPHAN_IN_STRIPE, FIELD_MISMATCH)
DRIFT_COLUMNS = ("product_id", "kind", "field", "local_value", "stripe_value")


class DuplicateProductIds(ValueError):
    """One side has the same product id twice, so matching would be ambiguous."""


def _raise_duplicates(side: str, ids: pa.Array | pa.ChunkedArray) -> None:
    index = pd.Index(ids.to_pylist())
    dupes = index[index.duplicated()].unique()[:5].tolist()
    raise DuplicateProductIds(
        f"{side} has duplicate product ids {dupes}; make ids unique before reconciling "
        "(the ids-unique asset checks list them all)"
    )


def _text_array(column: pd.Series) -> pa.Array | pa.ChunkedArray:
    """A text column as Arrow strings (zero-copy when already Arrow-backed), nulls as ""."""
    if isinstance(column.dtype, (pd.ArrowDtype, pd.StringDtype)):
        array = pa.chunked_array(pa.array(column.array))
        if array.type != pa.string():
            array = array.cast(pa.string())
    else:
        array = pa.array(column.to_numpy(dtype=object), type=pa.string(), from_pandas=True)
    return pc.fill_null(array, "") if array.null_count else array


def _differing_text(local_col: pd.Series, stripe_col: pd.Series, local_at: pa.Array, stripe_at: pa.Array):
    left = _text_array(local_col).take(local_at)
    right = _text_array(stripe_col).take(stripe_at)
    differs = np.flatnonzero(pc.not_equal(left, right).to_numpy(zero_copy_only=False))
    if not len(differs):
        return differs, [], []
    at = pa.array(differs)
    return differs, _blank_to_none(left.take(at).to_pylist()), _blank_to_none(right.take(at).to_pylist())


def _blank_to_none(values: list) -> list:
    return [None if v == "" else v for v in values]


def _differing_scalar(field: str, local_col: pd.Series, stripe_col: pd.Series, local_at: np.ndarray, stripe_at: np.ndarray):
    if field == "unit_amount":
        # -1 stands for "no price": amounts are never negative, and NA != NA would count as drift.
        left = local_col.to_numpy(dtype="int64", na_value=-1)[local_at]
        right = stripe_col.to_numpy(dtype="int64", na_value=-1)[stripe_at]
        render = lambda v: None if v == -1 else str(int(v))
    else:  # active
        left = local_col.to_numpy(dtype=bool)[local_at]
        right = stripe_col.to_numpy(dtype=bool)[stripe_at]
        render = lambda v: "true" if v else "false"
    differs = np.flatnonzero(left != right)
    return differs, [render(v) for v in left[differs]], [render(v) for v in right[differs]]


SCALAR_FIELDS = ("active", "unit_amount")


def diff_catalog(local: pd.DataFrame, stripe: pd.DataFrame) -> pd.DataFrame:
    """Every discrepancy between the canonical local and Stripe frames, one row each."""
    local_ids = _text_array(local["product_id"])
    stripe_ids = _text_array(stripe["product_id"])
    if len(pc.unique(local_ids)) != len(local_ids):
        _raise_duplicates("the catalog", local_ids)

    # For each Stripe row, the position of the same product in the catalog, or -1.
    local_pos = pc.fill_null(pc.index_in(stripe_ids, value_set=local_ids), -1).to_numpy()
    matched_stripe = np.flatnonzero(local_pos >= 0)
    matched_local = local_pos[matched_stripe]
    unmatched = np.flatnonzero(local_pos < 0)
    orphan_ids = stripe_ids.take(pa.array(unmatched)).to_pylist()
    # An archived Stripe product the catalog does not know is retired, not drift (that is
    # also where the `archive` orphan policy leaves it); only active ones are orphans.
    orphans = unmatched[stripe["active"].to_numpy(dtype=bool)[unmatched]]
    # A catalog position hit twice means a Stripe id repeated; no second hash table needed.
    hits = np.bincount(matched_local, minlength=len(local_ids))
    if (len(hits) and hits.max() > 1) or len(set(orphan_ids)) != len(orphan_ids):
        _raise_duplicates("Stripe", stripe_ids)
    missing = np.flatnonzero(hits == 0)

    def local_ids_at(positions: np.ndarray) -> list[str]:
        return local_ids.take(pa.array(positions)).to_pylist()

    pieces: list[pd.DataFrame] = []
    if len(missing):
        pieces.append(_rows(local_ids_at(missing), MISSING_IN_STRIPE, None, None, None))
    if len(orphans):
        pieces.append(_rows(stripe_ids.take(pa.array(orphans)).to_pylist(), ORPHAN_IN_STRIPE, None, None, None))

    local_at, stripe_at = pa.array(matched_local), pa.array(matched_stripe)
    for field in COMPARED_FIELDS:
        if field in SCALAR_FIELDS:
            differs, left, right = _differing_scalar(field, local[field], stripe[field], matched_local, matched_stripe)
        else:
            differs, left, right = _differing_text(local[field], stripe[field], local_at, stripe_at)
        if len(differs):
            pieces.append(_rows(local_ids_at(matched_local[differs]), FIELD_MISMATCH, field, left, right))

    if not pieces:
        return empty_drift()
    drift = pd.concat(pieces, ignore_index=True)
    return drift.sort_values(["kind", "product_id", "field"], kind="stable", ignore_index=True)


def _rows(ids: list[str], kind: str, field: str | None, local_values, stripe_values) -> pd.DataFrame:
    n = len(ids)
    return pd.DataFrame(
        {
            "product_id": np.array(ids, dtype=object),
            "kind": np.full(n, kind, dtype=object),
            "field": np.full(n, field, dtype=object),
            "local_value": local_values if local_values is not None else np.full(n, None, dtype=object),
            "stripe_value": stripe_values if stripe_values is not None else np.full(n, None, dtype=object),
        }
    )


def empty_drift() -> pd.DataFrame:
    return pd.DataFrame({column: pd.Series(dtype=object) for column in DRIFT_COLUMNS})


def summarize_drift(drift: pd.DataFrame, local_count: int, stripe_count: int) -> dict[str, Any]:
    """Counts per kind, products affected and the drift rate (products with drift / all products)."""
    counts = drift["kind"].value_counts()
    by_kind = {kind: int(counts.get(kind, 0)) for kind in DRIFT_KINDS}
    orphans = by_kind[ORPHAN_IN_STRIPE]
    products_total = local_count + orphans
    products_with_drift = int(drift["product_id"].nunique())
    mismatches = drift[drift["kind"] == FIELD_MISMATCH]
    return {
        **by_kind,
        "total": len(drift),
        "products_total": products_total,
        "products_with_drift": products_with_drift,
        "drift_rate": products_with_drift / products_total if products_total else 0.0,
        "field_mismatch_by_field": {k: int(v) for k, v in mismatches["field"].value_counts().sort_index().items()},
        "local_count": local_count,
        "stripe_count": stripe_count,
    }
