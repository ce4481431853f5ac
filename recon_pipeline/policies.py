"""The policies a user chooses by setting, named once.

Plain string enums: a value compares equal to its name, so what is stored in the database
or written in run config is the same text a user types.
"""

from __future__ import annotations

from enum import StrEnum


class OrphanPolicy(StrEnum):
    """What repair does with a product in Stripe but not in the catalog (RECON_ORPHAN_POLICY), or
    with a price of a catalog product whose lookup key the catalog does not own (RECON_PRICE_ORPHAN_POLICY)."""

    REPORT = "report"
    ARCHIVE = "archive"
    ADOPT = "adopt"


class ConflictPolicy(StrEnum):
    """Who wins when Stripe changes a field the catalog owns."""

    LOCAL_WINS = "local_wins"
    STRIPE_WINS = "stripe_wins"
    LATEST_WINS = "latest_wins"

    @property
    def writes_catalog(self) -> bool:
        """Whether this policy may write Stripe's values into the catalog."""
        return self is not ConflictPolicy.LOCAL_WINS


class Executor(StrEnum):
    """How a run executes its steps (see recon_pipeline/defs/executors.py)."""

    MULTIPROCESS = "multiprocess"
    IN_PROCESS = "in_process"
    K8S = "k8s"
    CELERY = "celery"
