"""Jobs users run from the UI, the CLI and schedules."""

import dagster as dg

from recon_pipeline.defs.assets import GROUP

reconcile_catalog = dg.define_asset_job(
    "reconcile_catalog",
    selection=dg.AssetSelection.groups(GROUP),
    description="Snapshot the catalog and Stripe, derive catalog_drift and run its checks.",
)
