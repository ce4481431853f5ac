"""Repair: plan writes from drift (pure), apply them to Stripe (idempotent, recorded), converge.

    plan.py          drift -> actions (no I/O)
    apply.py         actions -> idempotent writes, a sync_ledger row each, dead letters
    converge.py      read both sides -> diff -> plan -> apply -> verify, for every caller
    dead_letters.py  the dead_letter table; replay.py replays it
"""

from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.repair.apply import APPLIED, DEAD_LETTER, DRY_RUN, REPORTED, Repairer, RepairResult, WriteSource
from recon_pipeline.repair.converge import Converged, Sides, converge, full_drift, read_sides
from recon_pipeline.repair.plan import ACTION_ORDER, Deleted, RepairPlan, plan_repairs

__all__ = [
    "ACTION_ORDER",
    "APPLIED",
    "DEAD_LETTER",
    "DRY_RUN",
    "REPORTED",
    "Converged",
    "Deleted",
    "OrphanPolicy",
    "RepairPlan",
    "RepairResult",
    "Repairer",
    "Sides",
    "WriteSource",
    "converge",
    "full_drift",
    "plan_repairs",
    "read_sides",
]
