"""Hourly partitions: what changed each hour on each side, the drift of what it touched, repaired.

    catalog_changes_hourly ─┐
                            ├─> hourly_drift ─> hourly_repair      (job: backfill_hours)
    stripe_events_hourly ───┘

UTC hours, start inclusive, from RECON_PARTITIONS_START. A range of hours runs as one run
(BackfillPolicy.single_run), and the partition store loads ranges. After an outage from T1
to T2, backfill exactly those hours (README: "Backfill after an outage"). Hours past
Stripe's 30-day event retention cannot be rebuilt from events: `within_event_retention`
warns, and `hourly_drift` falls back to a full reconciliation for such a range.

The partitions depend on a setting, so the assets are built by `build_defs(settings)`.
"""


import datetime as dt
from collections.abc import Callable
from typing import Any

import dagster as dg
import pandas as pd

from recon_pipeline.backfill import beyond_retention, catalog_changes, hour_key, recover_events, touched_products
from recon_pipeline.defs import accounts_partitions, chosen_dagster_mechanisms, run_id_of
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.reconcile import DRIFT_COLUMNS
from recon_pipeline.repair import APPLIED, DEAD_LETTER, WriteSource, converge, full_drift, read_sides
from recon_pipeline.settings import Settings
from recon_pipeline.sync.credentials import refusal

GROUP = "hourly"
ACCOUNT_DIMENSION, HOUR_DIMENSION = "account", "hour"


def _window(context: dg.AssetExecutionContext) -> tuple[dt.datetime, dt.datetime]:
    window = context.partition_time_window
    return window.start, window.end


def _account(context: dg.AssetExecutionContext) -> str | None:
    """With several Stripe accounts, the account of the run's hours (one per run); else None."""
    keys = context.partition_key_range
    if not isinstance(keys.start, dg.MultiPartitionKey) or not isinstance(keys.end, dg.MultiPartitionKey):
        return None
    first, last = (key.keys_by_dimension[ACCOUNT_DIMENSION] for key in (keys.start, keys.end))
    if first != last:
        raise dg.Failure(f"a run of the hourly assets covers one Stripe account's hours; this one spans {first} to {last}: run each account apart", allow_retries=False)
    return first


def _keyed(frame: pd.DataFrame, account: str | None) -> pd.DataFrame:
    """A frame's `hour` column as the run's partition keys: `<account>|<hour>` with several accounts."""
    return frame if account is None else frame.assign(hour=account + "|" + frame["hour"].astype(str))


def hourly_partitions(start: str) -> dg.HourlyPartitionsDefinition:
    """UTC hours from `start` (RECON_PARTITIONS_START); end_offset=1: the hour in progress is a
    partition too, so a backfill can run up to now."""
    return dg.HourlyPartitionsDefinition(start_date=start, timezone="UTC", end_offset=1)


def hourly_partitions_of(settings: Settings) -> dg.PartitionsDefinition:
    """The hours; with several Stripe accounts, account x hour (each account's hours backfilled on their own)."""
    hours = hourly_partitions(settings.partitions_start)
    accounts = accounts_partitions(settings.account_names)
    return hours if accounts is None else dg.MultiPartitionsDefinition({ACCOUNT_DIMENSION: accounts, HOUR_DIMENSION: hours})


def build_defs(settings: Settings) -> dg.Definitions:
    """The hourly assets over partitions from RECON_PARTITIONS_START (per account, with several),
    `backfill_hours` and its schedule."""
    hourly = hourly_partitions_of(settings)

    def hourly_asset(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetsDefinition]:
        """An asset of the group over these hours, a range loaded and stored in one run."""
        with chosen_dagster_mechanisms():
            return dg.asset(group_name=GROUP, partitions_def=hourly, backfill_policy=dg.BackfillPolicy.single_run(), io_manager_key="partition_store", **kwargs)

    @hourly_asset(kinds={"sql"})
    def catalog_changes_hourly(context: dg.AssetExecutionContext, catalog: CatalogResource) -> pd.DataFrame:
        """Catalog products last changed in each hour (by `updated_at`), one row each."""
        start, end = _window(context)
        frame = catalog_changes(catalog.catalog(), start, end)
        account = _account(context)
        if account is not None:  # the account's own products
            sold_in = catalog.catalog().accounts_of(frame["product_id"])
            frame = _keyed(frame[frame["product_id"].map(sold_in) == account].reset_index(drop=True), account)
        context.add_output_metadata({"changes": dg.MetadataValue.int(len(frame)), "hours": dg.MetadataValue.int(len(context.partition_keys))})
        return frame

    @hourly_asset(
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
    def stripe_events_hourly(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy):
        """Stripe product and price events created in each hour, also put in the inbox and applied
        (duplicates are no-ops), so a backfill recovers webhooks missed during an outage."""
        start, end = _window(context)
        account = _account(context)
        with stripe.calls(catalog, account) as gateway:
            recovered = recover_events(catalog.catalog(), gateway, start, end, policy.conflicts(), stripe.gateways())
        yield dg.Output(
            _keyed(recovered.frame, account),
            metadata={
                "events": dg.MetadataValue.int(len(recovered.frame)),
                "new_in_inbox": dg.MetadataValue.int(recovered.new_in_inbox),
                "applied": dg.MetadataValue.int(recovered.applied.applied),
                "conflicts": dg.MetadataValue.int(recovered.applied.conflicts),
            },
        )
        expired = beyond_retention(start)
        yield dg.AssetCheckResult(
            check_name="within_event_retention",
            passed=not expired,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={"first_hour": dg.MetadataValue.text(hour_key(start))},
            description=None if not expired else f"hours from {hour_key(start)} are older than Stripe's 30-day event retention; full reconciliation instead",
        )

    @hourly_asset(kinds={"pandas"})
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
        first_hour = context.partition_keys[0]
        with stripe.calls(catalog, _account(context)) as gateway:  # with several accounts, the run's account
            found = full_drift(catalog.catalog(), gateway) if beyond_retention(start) else read_sides(catalog.catalog(), gateway, touched).drift()
        if beyond_retention(start):
            drift = found.assign(hour=first_hour)
        else:
            rows = [(*row, hour) for row in found.itertuples(index=False) for hour in touched.get(row.product_id, [first_hour])]
            drift = pd.DataFrame(rows, columns=[*DRIFT_COLUMNS, "hour"])
        context.add_output_metadata(
            {
                "mode": dg.MetadataValue.text("full" if beyond_retention(start) else "touched"),
                "products_touched": dg.MetadataValue.int(len(touched)),
                "drift_rows": dg.MetadataValue.int(len(drift)),
                "products_with_drift": dg.MetadataValue.int(drift["product_id"].nunique()),
            }
        )
        return drift

    @hourly_asset(kinds={"stripe"}, pool="stripe_api")
    def hourly_repair(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, hourly_drift: pd.DataFrame) -> pd.DataFrame:
        """Repairs the drift of each hour's products (orphans are reported, never written), then
        verifies them: the hours' drift must be zero afterwards."""
        ids = sorted(set(hourly_drift["product_id"]))
        with stripe.calls(catalog, _account(context)) as gateway:
            converged = converge(catalog.catalog(), gateway, ids, source=WriteSource.BACKFILL, run_id=run_id_of(context), say=context.log.info)
        result = converged.result
        remaining = converged.remaining
        hours = hourly_drift.groupby("product_id")["hour"].agg(lambda h: sorted(set(h))).to_dict()
        frame = pd.DataFrame(
            [(o.product_id, o.action, o.status, o.writes, h) for o in result.outcomes for h in hours.get(o.product_id, [])],
            columns=["product_id", "action", "status", "writes", "hour"],
        )
        dead = result.count(DEAD_LETTER)
        context.add_output_metadata(
            {
                "applied": dg.MetadataValue.int(result.count(APPLIED)),
                "dead_letters": dg.MetadataValue.int(dead),
                "writes": dg.MetadataValue.int(result.writes),
                "remaining_drift": dg.MetadataValue.int(len(remaining)),
            }
        )
        if len(remaining) or dead:
            raise dg.Failure(
                f"{len(remaining)} drift rows remain on the hours' products after repair, {dead} products in dead_letter",
                metadata={"remaining": dg.MetadataValue.md(remaining.head(30).to_markdown(index=False) if len(remaining) else "none")},
            )
        return frame

    backfill_hours = dg.define_asset_job(
        "backfill_hours",
        selection=dg.AssetSelection.groups(GROUP),
        description="Rebuild and repair given hours: what changed on each side, the drift of what it touched, repaired.",
    )

    @dg.schedule(job=backfill_hours, cron_schedule="5 * * * *", execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
    def changes_hourly(context: dg.ScheduleEvaluationContext, catalog: CatalogResource, stripe: StripeResource):
        """Five minutes past each hour (UTC): the hour that just ended, as one partition of
        backfill_hours (with several Stripe accounts, one run per account). Skipped for an
        account while Stripe refuses its API key (backfill those hours after)."""
        previous = hour_key(context.scheduled_execution_time - dt.timedelta(hours=1))
        if not settings.several_accounts:
            refused = stripe.refused(catalog)
            return dg.SkipReason(refused) if refused else dg.RunRequest(run_key=previous, partition_key=previous)
        keys = [dg.MultiPartitionKey({ACCOUNT_DIMENSION: name, HOUR_DIMENSION: previous}) for name in settings.account_names if not refusal(catalog.engine(), stripe.gateway(name))]
        return [dg.RunRequest(run_key=str(key), partition_key=key) for key in keys] or dg.SkipReason("Stripe refused the API key of every account")

    return dg.Definitions(
        assets=[catalog_changes_hourly, stripe_events_hourly, hourly_drift, hourly_repair],
        jobs=[backfill_hours],
        schedules=[changes_hourly],
    )
