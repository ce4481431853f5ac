"""Jobs users run from the UI, the CLI and schedules."""

import os

import dagster as dg

from recon_pipeline.defs.assets import GROUP

reconcile_catalog = dg.define_asset_job(
    "reconcile_catalog",
    selection=dg.AssetSelection.groups(GROUP),
    description="Snapshot the catalog and Stripe, derive catalog_drift and run its checks.",
)

repair_catalog = dg.define_asset_job(
    "repair_catalog",
    selection=dg.AssetSelection.assets("catalog_repair"),
    description="Plan writes from catalog_drift, apply them (idempotent, retried, recorded in sync_ledger; "
    "failures to dead_letter), and verify the repaired products have no drift left.",
)

reconcile_hourly = dg.ScheduleDefinition(
    name="reconcile_hourly",
    job=reconcile_catalog,
    # RECON_RECONCILE_CRON exists for drills and tests that cannot wait an hour.
    cron_schedule=os.environ.get("RECON_RECONCILE_CRON", "0 * * * *"),
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Every hour on the hour (UTC): snapshot both sides and derive catalog_drift. "
    "Drift then triggers repair_catalog through drift_repair_sensor.",
)
