"""Reconciliation logic: canonical frames of both sides and the drift between them (no Dagster)."""

from recon_pipeline.fields import COMPARED_FIELDS, PRICE_COMPARED_FIELDS
from recon_pipeline.reconcile.diff import (
    DRIFT_COLUMNS,
    DRIFT_KINDS,
    FIELD_MISMATCH,
    MISSING_IN_STRIPE,
    ORPHAN_IN_STRIPE,
    PRICE_FIELD_MISMATCH,
    PRICE_MISSING_IN_STRIPE,
    PRICE_ORPHAN_IN_STRIPE,
    DuplicateProductIds,
    diff_catalog,
    empty_drift,
    shortened,
    summarize_drift,
    syncable_defaults,
)
from recon_pipeline.reconcile.frames import (
    FRAME_COLUMNS,
    canonical_metadata,
    local_frame,
    local_price_frame,
    stripe_frame,
    stripe_price_frame,
    stripe_product_id,
)

__all__ = [
    "COMPARED_FIELDS",
    "DRIFT_COLUMNS",
    "DRIFT_KINDS",
    "FIELD_MISMATCH",
    "FRAME_COLUMNS",
    "MISSING_IN_STRIPE",
    "ORPHAN_IN_STRIPE",
    "PRICE_COMPARED_FIELDS",
    "PRICE_FIELD_MISMATCH",
    "PRICE_MISSING_IN_STRIPE",
    "PRICE_ORPHAN_IN_STRIPE",
    "DuplicateProductIds",
    "canonical_metadata",
    "diff_catalog",
    "empty_drift",
    "local_frame",
    "local_price_frame",
    "shortened",
    "stripe_frame",
    "stripe_price_frame",
    "stripe_product_id",
    "summarize_drift",
    "syncable_defaults",
]
