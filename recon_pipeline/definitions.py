"""The project's Dagster Definitions: every asset, check, job, schedule, sensor and resource."""

import dagster as dg

from recon_pipeline.defs import assets, hourly, jobs, repair, sensors, sync
from recon_pipeline.defs.executors import executor_for
from recon_pipeline.defs.resources import build_resources
from recon_pipeline.settings import Settings


def build_defs() -> dg.Definitions:
    """Definitions with resources configured from the environment as it is now."""
    return dg.Definitions(
        assets=[assets.local_products, assets.stripe_products, assets.catalog_drift, repair.catalog_repair, sync.outbox_push, sync.inbox_apply,
                hourly.catalog_changes_hourly, hourly.stripe_events_hourly, hourly.hourly_drift, hourly.hourly_repair],
        asset_checks=[*assets.catalog_drift_freshness],
        jobs=[jobs.reconcile_catalog, jobs.repair_catalog, sync.drain_outbox, sync.apply_inbox, hourly.backfill_hours],
        schedules=[jobs.reconcile_hourly, hourly.changes_hourly],
        sensors=[
            sensors.drift_repair_sensor,
            sensors.alert_sensor,
            assets.freshness_checks_sensor,
            sync.outbox_sensor,
            sync.stripe_events_poller,
        ],
        resources=build_resources(),
        executor=executor_for(Settings.from_env().executor),
    )


defs = build_defs()
