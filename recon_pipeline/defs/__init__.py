"""The Dagster layer: thin wiring of the catalog, the Stripe client and the logic, by domain.

One module per domain (reconciliation, repair, sync, hourly, alerts), each with a
`build_defs(settings)`; `recon_pipeline.definitions` merges them. No SQL and no business
rule lives here: assets, checks and sensors ask the logic layer and report what it says.
"""

import dagster as dg
from dagster._core.errors import DagsterInvalidPropertyError


def run_id_of(context: dg.AssetExecutionContext) -> str | None:
    """The run's id for the ledger, or None when the asset is called directly (tests)."""
    try:
        return context.run.run_id
    except DagsterInvalidPropertyError:
        return None
