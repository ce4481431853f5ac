"""Repair: plan writes from drift (pure), apply them to Stripe (idempotent, recorded), converge."""

from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.repair.apply import (
    APPLIED,
    DEAD_LETTER,
    DRY_RUN,
    REPORTED,
    Outcome,
    Repairer,
    RepairResult,
    WriteSource,
    lookup_key_for,
    unanswered_products,
)
from recon_pipeline.repair.converge import Converged, Sides, converge, full_drift, read_sides
from recon_pipeline.repair.plan import (
    ACTION_ORDER,
    ADOPT_ORPHAN,
    ARCHIVE_ORPHAN,
    CHANGE_PRICE,
    CREATE_PRODUCT,
    REPORT_ORPHAN,
    UPDATE_PRODUCT,
    RepairAction,
    RepairPlan,
    plan_repairs,
    with_price_tidy,
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
    "Converged",
    "OrphanPolicy",
    "Outcome",
    "RepairAction",
    "RepairPlan",
    "RepairResult",
    "Repairer",
    "Sides",
    "WriteSource",
    "converge",
    "full_drift",
    "lookup_key_for",
    "plan_repairs",
    "read_sides",
    "unanswered_products",
    "with_price_tidy",
]
