"""Repair: plan writes from drift (pure) and apply them to Stripe (idempotent, recorded)."""

from recon_pipeline.repair.apply import (
    APPLIED,
    DEAD_LETTER,
    DRY_RUN,
    REPORTED,
    Outcome,
    RepairResult,
    Repairer,
    fetch_products_by_id,
    lookup_key_for,
)
from recon_pipeline.repair.plan import (
    ACTION_ORDER,
    ADOPT_ORPHAN,
    ARCHIVE_ORPHAN,
    CHANGE_PRICE,
    CREATE_PRODUCT,
    REPORT_ORPHAN,
    UPDATE_PRODUCT,
    OrphanPolicy,
    RepairAction,
    RepairPlan,
    plan_repairs,
)

__all__ = [
    "ACTION_ORDER",
    "ADOPT_ORPHAN",
    "APPLIED",
    "ARCHIVE_ORPHAN",
    "CHANGE_PRICE",
    "CREATE_PRODUCT",
    "DEAD_LETTER",
    "DRY_RUN",
    "REPORTED",
    "REPORT_ORPHAN",
    "UPDATE_PRODUCT",
    "Outcome",
    "OrphanPolicy",
    "RepairAction",
    "RepairPlan",
    "RepairResult",
    "Repairer",
    "fetch_products_by_id",
    "lookup_key_for",
    "plan_repairs",
]
