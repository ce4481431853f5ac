"""Hourly partitions: what changed each hour on each side, the drift of what it touched, repaired.

    catalog_changes_hourly ─┐
                            ├─> hourly_drift ─> hourly_repair      (job: backfill_hours)
    stripe_events_hourly ───┘

UTC hours, start inclusive. A range of hours runs as one run (BackfillPolicy.single_run),
and the partition store loads ranges. After an outage from T1 to T2, backfill exactly
those hours (README: "Backfill after an outage"). Hours past Stripe's 30-day event
retention cannot be rebuilt from events: `within_event_retention` warns, and
`hourly_drift` falls back to a full reconciliation for such a range.
"""

import datetime as dt
import os

import dagster as dg
import pandas as pd

from recon_pipeline.catalog.quarantine import valid_local_frame
from recon_pipeline.backfill import (
    beyond_retention,
    catalog_changes,
    events_frame,
    hour_key,
    stripe_events,
    touched_products,
)
from recon_pipeline.defs.resources import CatalogResource, StripeResource
from recon_pipeline.reconcile import DRIFT_COLUMNS, diff_catalog, stripe_frame
from recon_pipeline.repair import APPLIED, DEAD_LETTER, OrphanPolicy, Repairer, fetch_products_by_id, full_drift, plan_repairs
from recon_pipeline.settings import Settings
from recon_pipeline.sync.inbox import ConflictPolicy, InboxApplier, store_event

GROUP = "hourly"
# end_offset=1: the hour in progress is a partition too, so a backfill can run up to now.
HOURLY = dg.HourlyPartitionsDefinition(start_date=os.environ.get("RECON_PARTITIONS_START", "2026-01-01-00:00"), timezone="UTC", end_offset=1)
COMMON = {
    "group_name": GROUP,
    "partitions_def": HOURLY,
    "backfill_policy": dg.BackfillPolicy.single_run(),
    "io_manager_key": "partition_store",
}


def _window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime]:
    window = context.partition_time_window
    return window.start, window.end


@dg.asset(**COMMON, kinds={"sql"})
def catalog_changes_hourly(context: dg.AssetExecutionContext, catalog: CatalogResource) -> pd.DataFrame:
    """Catalog products last changed in each hour (by `updated_at`), one row each."""
    start, end = _window(context)
    frame = catalog_changes(catalog.engine(), start, end)
    context.add_output_metadata({"changes": dg.MetadataValue.int(len(frame)), "hours": dg.MetadataValue.int(len(context.partition_keys))})
    return frame


@dg.asset(
    **COMMON,
    kinds={"stripe"},
    check_specs=[
        dg.AssetCheckSpec(
            "within_event_retention",
            asset="stripe_events_hourly",
            description="The hours are within Stripe's 30-day event retention. WARN when not: their events are gone, "
            "and hourly_drift reconciles the whole catalog instead.",
        )
    ],
)
def stripe_events_hourly(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource):
    """Stripe product and price events created in each hour, also put in the inbox and applied
    (duplicates are no-ops), so a backfill recovers webhooks missed during an outage."""
    start, end = _window(context)
    expired = beyond_retention(start)
    events = [] if expired else stripe_events(stripe.gateway(), start, end)
    stored = sum(store_event(catalog.engine(), event, "backfill") for event in events)
    applied = InboxApplier(catalog.engine(), ConflictPolicy(Settings.from_env().conflict_policy), stripe.gateway()).apply_pending()
    frame = events_frame(events)
    yield dg.Output(
        frame,
        metadata={
            "events": dg.MetadataValue.int(len(frame)),
            "new_in_inbox": dg.MetadataValue.int(stored),
            "applied": dg.MetadataValue.int(applied.applied),
            "conflicts": dg.MetadataValue.int(applied.conflicts),
        },
    )
    yield dg.AssetCheckResult(
        check_name="within_event_retention",
        passed=not expired,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"first_hour": dg.MetadataValue.text(hour_key(start))},
        description=None if not expired else f"hours from {hour_key(start)} are older than Stripe's 30-day event retention; full reconciliation instead",
    )


@dg.asset(**COMMON, kinds={"pandas"})
def hourly_drift(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    stripe: StripeResource,
    catalog_changes_hourly: pd.DataFrame,
    stripe_events_hourly: pd.DataFrame,
) -> pd.DataFrame:
    """Drift now, of the products either side touched in each hour (one row per drift and hour).

    For hours past the event retention, the whole catalog is reconciled and the drift is
    filed under the range's first hour.
    """
    start, _ = _window(context)
    touched = touched_products(catalog_changes_hourly, stripe_events_hourly)
    if beyond_retention(start):
        drift = full_drift(catalog.engine(), stripe.gateway())
        drift["hour"] = context.partition_keys[0]
        mode = "full"
    else:
        ids = sorted(touched)
        local = valid_local_frame(catalog.engine(), ids)
        remote = stripe_frame(fetch_products_by_id(stripe.gateway(), ids))
        found = diff_catalog(local, remote)
        rows = [(*row, hour) for row in found.itertuples(index=False) for hour in touched.get(row.product_id, [context.partition_keys[0]])]
        drift = pd.DataFrame(rows, columns=[*DRIFT_COLUMNS, "hour"])
        mode = "touched"
    context.add_output_metadata(
        {
            "mode": dg.MetadataValue.text(mode),
            "products_touched": dg.MetadataValue.int(len(touched)),
            "drift_rows": dg.MetadataValue.int(len(drift)),
            "products_with_drift": dg.MetadataValue.int(drift["product_id"].nunique()),
        }
    )
    return drift


@dg.asset(**COMMON, kinds={"stripe"}, pool="stripe_api")
def hourly_repair(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, hourly_drift: pd.DataFrame) -> pd.DataFrame:
    """Repairs the drift of each hour's products (orphans are reported, never written), then
    verifies them: the hours' drift must be zero afterwards."""
    ids = sorted(set(hourly_drift["product_id"]))
    gateway = stripe.gateway()
    local = valid_local_frame(catalog.engine(), ids)
    remote = stripe_frame(fetch_products_by_id(gateway, ids))
    plan = plan_repairs(diff_catalog(local, remote), local, remote, OrphanPolicy.REPORT)
    result = Repairer(gateway, catalog.engine(), context.run.run_id, source="backfill").apply_plan(plan)
    remaining = diff_catalog(
        valid_local_frame(catalog.engine(), ids), stripe_frame(fetch_products_by_id(gateway, ids))
    )
    remaining = remaining[remaining["kind"] != "orphan_in_stripe"]
    hours = {p: sorted(set(hourly_drift.loc[hourly_drift["product_id"] == p, "hour"])) for p in ids}
    frame = pd.DataFrame(
        [(o.product_id, o.action, o.status, o.writes, h) for o in result.outcomes for h in hours.get(o.product_id, [])],
        columns=["product_id", "action", "status", "writes", "hour"],
    )
    context.add_output_metadata(
        {
            "applied": dg.MetadataValue.int(result.count(APPLIED)),
            "dead_letters": dg.MetadataValue.int(result.count(DEAD_LETTER)),
            "writes": dg.MetadataValue.int(result.writes),
            "remaining_drift": dg.MetadataValue.int(len(remaining)),
        }
    )
    if len(remaining):
        raise dg.Failure(f"{len(remaining)} drift rows remain on the hours' products after repair", metadata={"remaining": dg.MetadataValue.md(remaining.head(30).to_markdown(index=False))})
    return frame


backfill_hours = dg.define_asset_job(
    "backfill_hours",
    selection=dg.AssetSelection.groups(GROUP),
    partitions_def=HOURLY,
    description="Rebuild and repair given hours: what changed on each side, the drift of what it touched, repaired.",
)

@dg.schedule(job=backfill_hours, cron_schedule="5 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
def changes_hourly(context: dg.ScheduleEvaluationContext):
    """Five minutes past each hour (UTC): the hour that just ended, as one partition of backfill_hours."""
    previous = hour_key(context.scheduled_execution_time - dt.timedelta(hours=1))
    return dg.RunRequest(run_key=previous, partition_key=previous)
