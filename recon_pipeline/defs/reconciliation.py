"""Reconciliation: both sides snapshotted, and the drift between them (group `reconciliation`).

    local_products ──┐
    local_prices ────┤   (one step, `snapshot`: the catalog read while both Stripe lists page
                     ├──> catalog_drift          (job: reconcile_catalog; schedule: reconcile_hourly)
    stripe_products ─┤    side by side; one stripe_api pool slot)
    stripe_prices ───┘

Each asset guards itself with blocking checks (ids unique, snapshot complete, drift rate
under the threshold), so a bad snapshot never produces a drift table that a repair would
act on. The logic is in `recon_pipeline.reconcile` (plain functions on DataFrames); this
module only wires it and reports.
"""


import datetime as dt
import time
from concurrent.futures import ThreadPoolExecutor

import dagster as dg
import pandas as pd

from recon_pipeline.catalog.history import append_drift
from recon_pipeline.catalog.quarantine import PRICE, quarantined_ids, quarantined_lookup_keys, record
from recon_pipeline.defs import account_of, chosen_dagster_mechanisms, per_account, run_id_of
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.progress import Progress
from recon_pipeline.reconcile import COMPARED_FIELDS, DRIFT_KINDS, PRICE_COMPARED_FIELDS, diff_catalog, summarize_drift
from recon_pipeline.reconcile.frames import read_local_prices, read_local_products
from recon_pipeline.reconcile.snapshot import PAGE, Snapshot, fetch_prices_snapshot, fetch_products_snapshot
from recon_pipeline.repair.converge import not_sold_elsewhere
from recon_pipeline.settings import DEFAULT_ACCOUNT, Settings
from recon_pipeline.sync.credentials import refusal

GROUP = "reconciliation"
PREVIEW_ROWS = 20
# The hourly schedule refreshes catalog_drift; two hours without it means the scheduler or
# the daemon is silent, and that is itself an alert (the freshness check below).
DRIFT_FRESHNESS = dt.timedelta(hours=2)


def _ids_unique_spec(asset: str, side: str, what: str = "product id") -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "ids_unique",
        asset=asset,
        blocking=True,
        description=f"Every {what} appears once in {side}; duplicates make matching ambiguous, so the diff does not run.",
    )


def _ids_unique_result(asset: str, ids: pd.Series, what: str = "product ids") -> dg.AssetCheckResult:
    dupes = sorted(ids[ids.duplicated()].unique().tolist())
    return dg.AssetCheckResult(
        check_name="ids_unique",
        asset_key=asset,
        passed=not dupes,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "duplicate_ids": dg.MetadataValue.int(len(dupes)),
            "examples": dg.MetadataValue.text(", ".join(map(str, dupes[:20])) or "none"),
        },
        description=None if not dupes else f"{len(dupes)} {what} appear more than once in {asset}",
    )


def _quarantine_check(asset: str, bad: list[dict]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="no_quarantined_rows",
        asset_key=asset,
        passed=not bad,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "quarantined": dg.MetadataValue.int(len(bad)),
            "reasons": dg.MetadataValue.md("\n".join(f"- {item['reason']}" for item in bad[:20]) or "none"),
        },
        description=None if not bad else f"{len(bad)} catalog rows quarantined, e.g. {bad[0]['reason']}",
    )


def _quarantine_spec(asset: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "no_quarantined_rows",
        asset=asset,
        description="No catalog row is quarantined. WARN: the rows listed in the `quarantine` table "
        "(with their reasons) are not synced until they are fixed; the others are.",
    )


def _snapshot_spec(asset: str, what: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(
        "snapshot_complete",
        asset=asset,
        blocking=True,
        description=f"Every created-range of the {what} list was paged to the end (has_more=false) "
        f"and no {what[:-1]} came back twice, so the snapshot is the whole account.",
    )


def _snapshot_outputs(asset: str, what: str, snapshot: Snapshot, api_base: str, id_column: str):
    """The snapshot's frame with its own list's counts, then its `snapshot_complete` check."""
    frame, stats = snapshot.frame, snapshot.stats
    yield dg.Output(
        frame,
        output_name=asset,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "active": dg.MetadataValue.int(int(frame["active"].sum())),
            "pages": dg.MetadataValue.int(snapshot.pages),
            "requests": dg.MetadataValue.int(snapshot.requests),
            "requests_per_object": dg.MetadataValue.float(round(snapshot.requests_per_object, 5)),
            "retries": dg.MetadataValue.int(int(stats.get("retries", 0))),
            "rate_limited": dg.MetadataValue.int(int(stats.get("rate_limited", 0))),
            "throttle_wait_s": dg.MetadataValue.float(round(float(stats.get("throttle_wait_s", 0.0)), 3)),
            "duration_s": dg.MetadataValue.float(round(snapshot.seconds, 3)),
            f"{what}_per_s": dg.MetadataValue.float(round(len(frame) / snapshot.seconds, 1) if snapshot.seconds else 0.0),
            "api_base": dg.MetadataValue.url(api_base) if api_base.startswith("http") else api_base,
        },
    )
    complete = snapshot.complete and snapshot.duplicates == 0 and frame[id_column].is_unique
    yield dg.AssetCheckResult(
        check_name="snapshot_complete",
        asset_key=asset,
        passed=bool(complete),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            what: dg.MetadataValue.int(len(frame)),
            "pages": dg.MetadataValue.int(snapshot.pages),
            "duplicates": dg.MetadataValue.int(snapshot.duplicates),
            "ranges_exhausted": dg.MetadataValue.bool(bool(snapshot.complete)),
        },
        description=None if complete else f"the {what} list was not paged to the end, or returned one twice",
    )


def _local_products_results(catalog: CatalogResource, stripe: StripeResource, account: str | None) -> tuple[pd.DataFrame, list]:
    """local_products: (the frame, its Output and check results)."""
    started = time.perf_counter()
    frame, bad = read_local_products(catalog.catalog(), list(stripe.gateways()), account)
    record(catalog.engine(), bad)
    output = dg.Output(
        frame,
        output_name="local_products",
        metadata={
            "quarantined": dg.MetadataValue.int(len(bad)),
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "active": dg.MetadataValue.int(int(frame["active"].sum())),
            "with_default_price": dg.MetadataValue.int(int((frame["default_price"] != "").sum())),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )
    return frame, [output, _ids_unique_result("local_products", frame["product_id"]), _quarantine_check("local_products", bad)]


def _local_prices_results(catalog: CatalogResource, local_products: pd.DataFrame, account: str | None) -> list:
    """local_prices: its Output and check results."""
    started = time.perf_counter()
    engine = catalog.engine()
    syncable = set(local_products["product_id"].astype(str))
    if account is not None:  # the whole catalog's quarantine, then this account's prices
        syncable = set(catalog.catalog().product_accounts()["id"]) - quarantined_ids(engine)  # ids only: local_products read the rows
    frame, bad = read_local_prices(catalog.catalog(), syncable, set(local_products["product_id"].astype(str)))
    record(engine, bad, PRICE)
    output = dg.Output(
        frame,
        output_name="local_prices",
        metadata={
            "quarantined": dg.MetadataValue.int(len(bad)),
            "dagster/row_count": dg.MetadataValue.int(len(frame)),
            "active": dg.MetadataValue.int(int(frame["active"].sum())),
            "recurring": dg.MetadataValue.int(int((frame["recurring_interval"] != "").sum())),
            "tiered": dg.MetadataValue.int(int((frame["billing_scheme"] == "tiered").sum())),
            "with_currency_options": dg.MetadataValue.int(int((frame["currency_options"] != "").sum())),
            "products_with_prices": dg.MetadataValue.int(int(frame["product_id"].nunique())),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )
    return [output, _ids_unique_result("local_prices", frame["lookup_key"], "price lookup keys"), _quarantine_check("local_prices", bad)]


def read_catalog(catalog: CatalogResource, stripe: StripeResource, account: str | None, with_prices: bool = True) -> list:
    """Both catalog assets' Outputs and check results: the products, then their prices."""
    products, results = _local_products_results(catalog, stripe, account)
    return results + (_local_prices_results(catalog, products, account) if with_prices else [])


def list_stripe(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy) -> list:
    """Both Stripe assets' Outputs and check results: the two lists side by side, each on its own
    endpoint limit, within the account's global one."""
    listed = {what: Progress(f"Stripe {what} listed", None, context.log.info) for what in ("products", "prices")}
    with stripe.calls(catalog, account_of(context)) as gateway, ThreadPoolExecutor(max_workers=2, thread_name_prefix="stripe-list") as pool:
        products_job = pool.submit(fetch_products_snapshot, gateway, stripe.snapshot_concurrency, listed["products"].advance)
        prices_job = pool.submit(fetch_prices_snapshot, gateway, stripe.snapshot_concurrency, listed["prices"].advance)
        products, prices = products_job.result(), prices_job.result()
    for progress in listed.values():
        context.log.info(progress.summary())
    keys = prices.frame["lookup_key"]
    return [
        *_snapshot_outputs("stripe_products", "products", products, stripe.api_base, "stripe_id"),
        _ids_unique_result("stripe_products", products.frame["product_id"]),
        *_snapshot_outputs("stripe_prices", "prices", prices, stripe.api_base, "price_id"),
        _ids_unique_result("stripe_prices", keys[keys != ""], "price lookup keys"),
        fits_interval(len(products.frame), len(prices.frame), max(products.seconds, prices.seconds), stripe.endpoint_rate, policy.reconcile_interval_s),
    ]


LOCAL_ASSETS = ("local_products", "local_prices")
STRIPE_ASSETS = ("stripe_products", "stripe_prices")


def _snapshot_out(kind: str, description: str) -> dg.AssetOut:
    """One of the snapshot step's four assets (each may be materialized without the others)."""
    return dg.AssetOut(group_name=GROUP, kinds={kind, "pandas"}, is_required=False, description=description)


@dg.multi_asset(
    name="snapshot",
    pool="stripe_api",
    can_subset=True,
    outs={
        "local_products": _snapshot_out(
            "sql",
            "Every product of the local catalog, in the canonical frame shape the diff compares. One row per "
            "product: product_id, name, description, active, metadata (canonical JSON), marketing_features, images, "
            "package_dimensions, shippable, statement_descriptor, tax_code, unit_label, url, default_price (its lookup "
            "key). Read from the catalog database (RECON_CATALOG_URL) in chunks. With several Stripe accounts, the "
            "products of this partition's account. Rows Stripe would refuse, or of an account RECON_STRIPE_ACCOUNTS "
            "does not name, are quarantined with their reason instead of blocking the rest.",
        ),
        "local_prices": _snapshot_out(
            "sql",
            "Every price the catalog owns, by lookup key, in the canonical frame shape the diff compares. One "
            "row per price: lookup_key, product_id, active, currency, unit_amount (a decimal), billing_scheme, tiers_mode, "
            "tiers, recurring_interval/_count/_usage_type, transform_quantity, currency_options (the other currencies), "
            "custom_unit_amount, tax_behavior, nickname, metadata. A price Stripe would refuse, or of a product that is "
            "not synced, is quarantined with its reason.",
        ),
        "stripe_products": _snapshot_out(
            "stripe",
            "Every Stripe product, active and archived. The list is split over `created` ranges fetched "
            "concurrently, within the account's rate limits (global and per endpoint), with retries and backoff on "
            "429/5xx; each page becomes rows of the canonical frame as it arrives.",
        ),
        "stripe_prices": _snapshot_out(
            "stripe",
            "Every Stripe price, active and archived, with `tiers` and `currency_options` expanded. Listed "
            "like `stripe_products`, at the same time, on the prices endpoint's own rate limit. A price without a "
            "lookup key has an empty `lookup_key`: it is not the catalog's.",
        ),
    },
    internal_asset_deps={
        "local_products": set(),
        "local_prices": {dg.AssetKey("local_products")},
        "stripe_products": set(),
        "stripe_prices": set(),
    },
    check_specs=[
        _ids_unique_spec("local_products", "the catalog"),
        _quarantine_spec("local_products"),
        _ids_unique_spec("local_prices", "the catalog", "price lookup_key"),
        _quarantine_spec("local_prices"),
        _snapshot_spec("stripe_products", "products"),
        _ids_unique_spec("stripe_products", "the Stripe snapshot"),
        _snapshot_spec("stripe_prices", "prices"),
        _ids_unique_spec("stripe_prices", "the Stripe snapshot", "price lookup_key"),
        dg.AssetCheckSpec(
            "snapshot_fits_interval",
            asset="stripe_prices",
            description="Listing the account fits between two scheduled reconciliations: the slower list's "
            "bound (its objects at 100 a page and the endpoint's rate limit) and the time it took are both under "
            "the interval of RECON_RECONCILE_CRON. WARN otherwise: runs would queue behind each other; see "
            "\"Beyond the hour\" in the README.",
        ),
    ],
)
def snapshot(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy):
    """Both sides at once, in one step: the catalog read (products, then their prices) while
    the two Stripe lists page side by side, so reading the catalog hides under the listing that
    Stripe's rate limits bound. One `stripe_api` pool slot. With several Stripe accounts, this
    partition's account. Any subset of the four assets can be materialized alone."""
    selected = {key.path[-1] for key in context.selected_asset_keys}
    account = account_of(context)
    catalog.catalog()  # its schema brought up to date (the rate budget's table too) before either side starts
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-read") as pool:
        local_job = pool.submit(read_catalog, catalog, stripe, account, "local_prices" in selected) if selected & set(LOCAL_ASSETS) else None
        stripe_results = list_stripe(context, catalog, stripe, policy) if selected & set(STRIPE_ASSETS) else []
        local_results = local_job.result() if local_job is not None else []
    checks = {(key.asset_key.path[-1], key.name) for key in context.selected_asset_check_keys}
    yield from (result for result in [*local_results, *stripe_results] if _selected(result, selected, checks))


def _selected(result: dg.Output | dg.AssetCheckResult, assets: set[str], checks: set[tuple[str, str]]) -> bool:
    """Whether the run asked for this output or check result (a step may run for a subset)."""
    if isinstance(result, dg.Output):
        return result.output_name in assets
    return result.asset_key is not None and (result.asset_key.path[-1], str(result.check_name)) in checks


def fits_interval(products: int, prices: int, listed_s: float, endpoint_rate: float, interval_s: float) -> dg.AssetCheckResult:
    """`snapshot_fits_interval`: the snapshot's bound (the larger list at 100 objects a request and
    the endpoint's limit) and its measured time, against the gap between two scheduled runs."""
    bound_s = max(products, prices) / (endpoint_rate * PAGE)
    worst = max(bound_s, listed_s)
    passed = worst <= interval_s
    return dg.AssetCheckResult(
        check_name="snapshot_fits_interval",
        asset_key="stripe_prices",
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "products": dg.MetadataValue.int(products),
            "prices": dg.MetadataValue.int(prices),
            "endpoint_rate": dg.MetadataValue.float(endpoint_rate),
            "bound_s": dg.MetadataValue.float(round(bound_s, 1)),
            "listed_s": dg.MetadataValue.float(round(listed_s, 1)),
            "interval_s": dg.MetadataValue.float(interval_s),
            "share_of_interval": dg.MetadataValue.float(round(worst / interval_s, 4) if interval_s else 0.0),
        },
        description=None
        if passed
        else f"Listing {max(products, prices):,} objects takes at least {bound_s:,.0f} s at {endpoint_rate:g} requests/s per endpoint "
        f"(this run: {listed_s:,.0f} s), more than the {interval_s:,.0f} s between scheduled reconciliations: set RECON_RECONCILE_CRON "
        "to run less often, or follow \"Beyond the hour\" in the README (hourly partitions from events, a full reconciliation daily).",
    )


DRIFT_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("product_id", "string", "The catalog's product id (Stripe's product id is the same)"),
        dg.TableColumn("lookup_key", "string", "A price's lookup key; empty for product rows"),
        dg.TableColumn("kind", "string", "missing_in_stripe | orphan_in_stripe | field_mismatch | price_missing_in_stripe | price_orphan_in_stripe | price_field_mismatch"),
        dg.TableColumn("field", "string", "The field that differs (field_mismatch, price_field_mismatch)"),
        dg.TableColumn("local_value", "string", "The catalog's value, canonical"),
        dg.TableColumn("stripe_value", "string", "Stripe's value, canonical"),
    ]
)
"""catalog_drift's columns, as the UI's column view shows them (the same as `drift_history`'s, less run and time)."""


def drift_metadata(drift: pd.DataFrame, summary: dict) -> dict[str, dg.MetadataValue]:
    """Counts per kind and per field (zeros included, so the UI's plots are continuous lines)."""
    by_field, by_price_field = summary["field_mismatch_by_field"], summary["price_field_mismatch_by_field"]
    return {
        **{f"drift/{kind}": dg.MetadataValue.int(summary[kind]) for kind in (*DRIFT_KINDS, "total")},
        **{f"drift/field_mismatch/{field}": dg.MetadataValue.int(by_field.get(field, 0)) for field in COMPARED_FIELDS},
        **{f"drift/price_field_mismatch/{field}": dg.MetadataValue.int(by_price_field.get(field, 0)) for field in PRICE_COMPARED_FIELDS},
        "drift_rate": dg.MetadataValue.float(round(summary["drift_rate"], 6)),
        "products_with_drift": dg.MetadataValue.int(summary["products_with_drift"]),
        "prices_with_drift": dg.MetadataValue.int(summary["prices_with_drift"]),
        "products_total": dg.MetadataValue.int(summary["products_total"]),
        "dagster/row_count": dg.MetadataValue.int(len(drift)),
        "preview": dg.MetadataValue.md(_preview(drift)),
    }


def _preview(drift: pd.DataFrame) -> str:
    """The first rows of each kind (so price rows show beside product rows), as a table."""
    if not len(drift):
        return "_No drift: both sides agree._"
    per_kind = max(2, PREVIEW_ROWS // max(1, drift["kind"].nunique()))
    return drift.groupby("kind", sort=False).head(per_kind).head(PREVIEW_ROWS).to_markdown(index=False)


@dg.asset(
    group_name=GROUP,
    kinds={"pandas"},
    check_specs=[
        dg.AssetCheckSpec(
            "drift_rate_below_threshold",
            asset="catalog_drift",
            blocking=True,
            description="Share of products with any drift (in the product or one of its prices) is at most "
            "RECON_MAX_DRIFT_RATE (default 1%). Fails with ERROR above it: look at the drift preview, then repair.",
        )
    ],
)
def catalog_drift(
    context: dg.AssetExecutionContext,
    catalog: CatalogResource,
    policy: ReconPolicy,
    local_products: pd.DataFrame,
    stripe_products: pd.DataFrame,
    local_prices: pd.DataFrame,
    stripe_prices: pd.DataFrame,
):
    """Every discrepancy between the catalog and Stripe, products and prices, one row each.

    Columns: product_id, lookup_key (NULL for product rows), kind (missing_in_stripe |
    orphan_in_stripe | field_mismatch | price_missing_in_stripe | price_orphan_in_stripe |
    price_field_mismatch), field, local_value, stripe_value. Metadata counts each kind and each
    field, and shows the first rows of each kind. Every row is also appended to the catalog
    database's `drift_history` table (with the run, the time and the account; kept
    RECON_DRIFT_HISTORY_DAYS), for "what drifted, when, and for how long" in SQL.
    """
    # A quarantined product or price is not synced, and not an orphan either: leave its Stripe side alone.
    engine = catalog.engine()
    held, held_keys = quarantined_ids(engine), quarantined_lookup_keys(engine)
    stripe_products = stripe_products[~stripe_products["product_id"].isin(held)].reset_index(drop=True)
    stripe_prices = stripe_prices[~stripe_prices["product_id"].isin(held) & ~stripe_prices["lookup_key"].isin(held_keys)].reset_index(drop=True)
    account = account_of(context)
    if account is not None:  # several accounts: a product sold in another is not this one's orphan
        stripe_products, stripe_prices = not_sold_elsewhere(stripe_products, stripe_prices, catalog.catalog().sold_elsewhere(account))
    drift = diff_catalog(local_products, stripe_products, local_prices, stripe_prices)
    summary = summarize_drift(drift, len(local_products), len(stripe_products))
    named = {} if account is None else {"account": dg.MetadataValue.text(account)}
    kept = append_drift(
        engine, drift, run_id=run_id_of(context), account=account or DEFAULT_ACCOUNT, observed_at=dt.datetime.now(dt.UTC), keep_days=policy.drift_history_days
    )
    history = {"drift_history/appended": dg.MetadataValue.int(kept), "dagster/column_schema": dg.MetadataValue.table_schema(DRIFT_SCHEMA)}
    yield dg.Output(drift, metadata={**drift_metadata(drift, summary), **named, **history})

    threshold = policy.max_drift_rate
    rate = summary["drift_rate"]
    yield dg.AssetCheckResult(
        check_name="drift_rate_below_threshold",
        passed=rate <= threshold,
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            "drift_rate": dg.MetadataValue.float(round(rate, 6)),
            "threshold": dg.MetadataValue.float(threshold),
            "products_with_drift": dg.MetadataValue.int(summary["products_with_drift"]),
            "products_total": dg.MetadataValue.int(summary["products_total"]),
        },
        description=(
            None
            if rate <= threshold
            else ("" if account is None else f"Stripe account {account}: ")
            + f"{summary['products_with_drift']} of {summary['products_total']} products drifted ({rate:.2%} > {threshold:.2%})"
        ),
    )


with chosen_dagster_mechanisms():
    drift_freshness_checks = dg.build_last_update_freshness_checks(
        assets=[catalog_drift.key], lower_bound_delta=DRIFT_FRESHNESS, severity=dg.AssetCheckSeverity.ERROR
    )
    freshness_checks_sensor = dg.build_sensor_for_freshness_checks(
        freshness_checks=drift_freshness_checks, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.RUNNING
    )
"""`freshness_check` on catalog_drift (ERROR when it was not materialized in the last two hours:
the schedule or the daemon is silent), and Dagster's sensor that evaluates it when it may be overdue."""
FRESHNESS_CHECK = dg.AssetCheckKey(catalog_drift.key, "freshness_check")


reconcile_catalog = dg.define_asset_job(
    "reconcile_catalog",
    selection=dg.AssetSelection.groups(GROUP),
    description="Snapshot the catalog and Stripe, derive catalog_drift and run its checks.",
)


def build_defs(settings: Settings) -> dg.Definitions:
    """The reconciliation assets, their job, and the hourly schedule (RECON_RECONCILE_CRON)."""

    @dg.schedule(name="reconcile_hourly", job=reconcile_catalog, cron_schedule=settings.reconcile_cron, execution_timezone="UTC", default_status=dg.DefaultScheduleStatus.RUNNING)
    def reconcile_hourly(context: dg.ScheduleEvaluationContext, catalog: CatalogResource, stripe: StripeResource):
        """Every hour on the hour (UTC): snapshot both sides and derive catalog_drift (with several
        Stripe accounts, one run per account). Drift then triggers repair_catalog through
        drift_repair_sensor. Skipped for an account while Stripe refuses its API key."""
        if not settings.several_accounts:
            refused = stripe.refused(catalog)
            return dg.SkipReason(refused) if refused else dg.RunRequest()
        tick = context.scheduled_execution_time.isoformat()
        requests = [
            dg.RunRequest(run_key=f"reconcile_hourly:{tick}:{name}", partition_key=name)
            for name in settings.account_names
            if not refusal(catalog.engine(), stripe.gateway(name))
        ]
        return requests or dg.SkipReason("Stripe refused the API key of every account")

    return dg.Definitions(
        assets=per_account([snapshot, catalog_drift], settings.account_names),
        asset_checks=drift_freshness_checks,
        jobs=[reconcile_catalog],
        schedules=[reconcile_hourly],
        sensors=[freshness_checks_sensor],
    )
