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
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pandas as pd

from recon_pipeline.catalog.history import append_drift
from recon_pipeline.catalog.quarantine import PRICE, quarantined_ids, quarantined_lookup_keys, record
from recon_pipeline.defs import account_of, chosen_dagster_mechanisms, per_account, run_id_of
from recon_pipeline.defs.parquet_io import as_file
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.progress import Progress
from recon_pipeline.reconcile import COMPARED_FIELDS, DRIFT_KINDS, PRICE_COMPARED_FIELDS, shortened, summarize_drift
from recon_pipeline.reconcile.diff import Side, find_drift
from recon_pipeline.reconcile.frames import STRIPE_PRICE_SCHEMA, STRIPE_PRODUCT_SCHEMA, local_price_chunks, local_product_chunks
from recon_pipeline.reconcile.snapshot import PAGE, Snapshot, fetch_prices_snapshot, fetch_products_snapshot
from recon_pipeline.reconcile.tables import ParquetTable, TableWriter, give_back_memory
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


def _ids_unique_result(asset: str, side: ParquetTable, column: str, what: str = "product ids") -> dg.AssetCheckResult:
    """`ids_unique`: the values of `column` the side holds more than once (Stripe's "" is no key)."""
    dupes = [row[0] for row in side.query(f"SELECT {column} FROM side WHERE {column} <> '' GROUP BY 1 HAVING count(*) > 1 ORDER BY 1")]
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


def _snapshot_outputs(asset: str, what: str, snapshot: Snapshot, api_base: str):
    """The snapshot's file with its own list's counts, then its `snapshot_complete` check."""
    table, stats = snapshot.table, snapshot.stats
    assert table is not None, "the snapshot step writes its lists as they come"
    ((active,),) = table.query("SELECT count(*) FILTER (WHERE active) FROM side")
    yield dg.Output(
        table,
        output_name=asset,
        metadata={
            "dagster/row_count": dg.MetadataValue.int(snapshot.rows),
            "active": dg.MetadataValue.int(int(active)),
            "pages": dg.MetadataValue.int(snapshot.pages),
            "requests": dg.MetadataValue.int(snapshot.requests),
            "requests_per_object": dg.MetadataValue.float(round(snapshot.requests_per_object, 5)),
            "retries": dg.MetadataValue.int(int(stats.get("retries", 0))),
            "rate_limited": dg.MetadataValue.int(int(stats.get("rate_limited", 0))),
            "throttle_wait_s": dg.MetadataValue.float(round(float(stats.get("throttle_wait_s", 0.0)), 3)),
            "duration_s": dg.MetadataValue.float(round(snapshot.seconds, 3)),
            f"{what}_per_s": dg.MetadataValue.float(round(snapshot.rows / snapshot.seconds, 1) if snapshot.seconds else 0.0),
            "api_base": dg.MetadataValue.url(api_base) if api_base.startswith("http") else api_base,
        },
    )
    complete = snapshot.complete and snapshot.duplicates == 0
    yield dg.AssetCheckResult(
        check_name="snapshot_complete",
        asset_key=asset,
        passed=bool(complete),
        severity=dg.AssetCheckSeverity.ERROR,
        metadata={
            what: dg.MetadataValue.int(snapshot.rows),
            "pages": dg.MetadataValue.int(snapshot.pages),
            "duplicates": dg.MetadataValue.int(snapshot.duplicates),
            "ranges_exhausted": dg.MetadataValue.bool(bool(snapshot.complete)),
        },
        description=None if complete else f"the {what} list was not paged to the end, or returned one twice",
    )


def _local_products_results(catalog: CatalogResource, stripe: StripeResource, account: str | None, staging: Path) -> tuple[set[str], list]:
    """local_products: (its product ids, its Output and check results)."""
    started = time.perf_counter()
    bad: list[dict] = []
    table = TableWriter(staging / "local_products.parquet").write_all(local_product_chunks(catalog.catalog(), list(stripe.gateways()), account, bad))
    record(catalog.engine(), bad)
    ((active, with_default),) = table.query("SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE default_price <> '') FROM side")
    output = dg.Output(
        table,
        output_name="local_products",
        metadata={
            "quarantined": dg.MetadataValue.int(len(bad)),
            "dagster/row_count": dg.MetadataValue.int(table.rows),
            "active": dg.MetadataValue.int(int(active)),
            "with_default_price": dg.MetadataValue.int(int(with_default)),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )
    return set(table.values("product_id")), [output, _ids_unique_result("local_products", table, "product_id"), _quarantine_check("local_products", bad)]


def _local_prices_results(catalog: CatalogResource, product_ids: set[str], account: str | None, staging: Path) -> list:
    """local_prices (the prices of `product_ids`): its Output and check results."""
    started = time.perf_counter()
    engine = catalog.engine()
    syncable = product_ids
    if account is not None:  # the whole catalog's quarantine, then this account's prices
        syncable = set(catalog.catalog().product_accounts()["id"]) - quarantined_ids(engine)  # ids only: local_products read the rows
    bad: list[dict] = []
    table = TableWriter(staging / "local_prices.parquet").write_all(local_price_chunks(catalog.catalog(), syncable, product_ids, bad))
    record(engine, bad, PRICE)
    ((active, recurring, tiered, with_options, products),) = table.query(
        "SELECT count(*) FILTER (WHERE active), count(*) FILTER (WHERE recurring_interval <> ''), count(*) FILTER (WHERE billing_scheme = 'tiered'), "
        "count(*) FILTER (WHERE currency_options <> ''), count(DISTINCT product_id) FROM side"
    )
    output = dg.Output(
        table,
        output_name="local_prices",
        metadata={
            "quarantined": dg.MetadataValue.int(len(bad)),
            "dagster/row_count": dg.MetadataValue.int(table.rows),
            "active": dg.MetadataValue.int(int(active)),
            "recurring": dg.MetadataValue.int(int(recurring)),
            "tiered": dg.MetadataValue.int(int(tiered)),
            "with_currency_options": dg.MetadataValue.int(int(with_options)),
            "products_with_prices": dg.MetadataValue.int(int(products)),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
        },
    )
    return [output, _ids_unique_result("local_prices", table, "lookup_key", "price lookup keys"), _quarantine_check("local_prices", bad)]


def read_catalog(catalog: CatalogResource, stripe: StripeResource, account: str | None, staging: Path, with_prices: bool = True) -> list:
    """Both catalog assets' Outputs and check results: the products, then their prices, each
    written chunk by chunk to a Parquet file in `staging`."""
    product_ids, results = _local_products_results(catalog, stripe, account, staging)
    return results + (_local_prices_results(catalog, product_ids, account, staging) if with_prices else [])


def list_stripe(context: dg.AssetExecutionContext, catalog: CatalogResource, stripe: StripeResource, policy: ReconPolicy, staging: Path) -> list:
    """Both Stripe assets' Outputs and check results: the two lists side by side, each on its own
    endpoint limit, within the account's global one, each page written to a Parquet file in
    `staging` as it comes."""
    listed = {what: Progress(f"Stripe {what} listed", None, context.log.info) for what in ("products", "prices")}
    with stripe.calls(catalog, account_of(context)) as gateway, ThreadPoolExecutor(max_workers=2, thread_name_prefix="stripe-list") as pool:
        concurrency = stripe.snapshot_concurrency
        products_into = TableWriter(staging / "stripe_products.parquet", STRIPE_PRODUCT_SCHEMA)
        prices_into = TableWriter(staging / "stripe_prices.parquet", STRIPE_PRICE_SCHEMA)
        products_job = pool.submit(fetch_products_snapshot, gateway, concurrency, listed["products"].advance, products_into)
        prices_job = pool.submit(fetch_prices_snapshot, gateway, concurrency, listed["prices"].advance, prices_into)
        products, prices = products_job.result(), prices_job.result()
    for progress in listed.values():
        context.log.info(progress.summary())
    assert products.table is not None and prices.table is not None
    return [
        *_snapshot_outputs("stripe_products", "products", products, stripe.api_base),
        _ids_unique_result("stripe_products", products.table, "product_id"),
        *_snapshot_outputs("stripe_prices", "prices", prices, stripe.api_base),
        _ids_unique_result("stripe_prices", prices.table, "lookup_key", "price lookup keys"),
        fits_interval(products.rows, prices.rows, max(products.seconds, prices.seconds), stripe.endpoint_rate, policy.reconcile_interval_s),
    ]


LOCAL_ASSETS = ("local_products", "local_prices")
STRIPE_ASSETS = ("stripe_products", "stripe_prices")


def _snapshot_out(kind: str, description: str) -> dg.AssetOut:
    """One of the snapshot step's four assets (each may be materialized without the others)."""
    return dg.AssetOut(group_name=GROUP, kinds={kind, "parquet"}, is_required=False, description=description)


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
    partition's account. Any subset of the four assets can be materialized alone.

    Each side is written to a Parquet file as it arrives (a page, a chunk of catalog rows) and
    handed on as that file: the step never holds a side whole, however large the catalog."""
    selected = {key.path[-1] for key in context.selected_asset_keys}
    account = account_of(context)
    catalog.catalog()  # its schema brought up to date (the rate budget's table too) before either side starts
    with tempfile.TemporaryDirectory(prefix="recon-snapshot-") as staging, ThreadPoolExecutor(max_workers=1, thread_name_prefix="catalog-read") as pool:
        local_job = pool.submit(read_catalog, catalog, stripe, account, Path(staging), "local_prices" in selected) if selected & set(LOCAL_ASSETS) else None
        stripe_results = list_stripe(context, catalog, stripe, policy, Path(staging)) if selected & set(STRIPE_ASSETS) else []
        local_results = local_job.result() if local_job is not None else []
        checks = {(key.asset_key.path[-1], key.name) for key in context.selected_asset_check_keys}
        # The IO manager moves each file into place as its Output is yielded; what is left goes with `staging`.
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
    """The first rows of each kind (so price rows show beside product rows), as a table; long
    values (tiers, currency options) shortened: the asset itself keeps them whole."""
    if not len(drift):
        return "_No drift: both sides agree._"
    per_kind = max(2, PREVIEW_ROWS // max(1, drift["kind"].nunique()))
    rows = drift.groupby("kind", sort=False).head(per_kind).head(PREVIEW_ROWS)
    return rows.assign(**{column: rows[column].map(shortened) for column in ("local_value", "stripe_value")}).to_markdown(index=False)


@dg.asset(
    group_name=GROUP,
    kinds={"duckdb", "pandas"},
    ins={name: as_file() for name in (*LOCAL_ASSETS, *STRIPE_ASSETS)},
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
    local_products: Side,
    stripe_products: Side,
    local_prices: Side,
    stripe_prices: Side,
):
    """Every discrepancy between the catalog and Stripe, products and prices, one row each.

    Columns: product_id, lookup_key (NULL for product rows), kind (missing_in_stripe |
    orphan_in_stripe | field_mismatch | price_missing_in_stripe | price_orphan_in_stripe |
    price_field_mismatch), field, local_value, stripe_value. Metadata counts each kind and each
    field, and shows the first rows of each kind. Every row is also appended to the catalog
    database's `drift_history` table (with the run, the time and the account; kept
    RECON_DRIFT_HISTORY_DAYS), for "what drifted, when, and for how long" in SQL.
    """
    give_back_memory()  # what the snapshot freed, before DuckDB takes its share (in one process, the peak is here)
    # A quarantined product or price is not synced, and not an orphan either: leave its Stripe side alone.
    engine = catalog.engine()
    held, held_keys = quarantined_ids(engine), quarantined_lookup_keys(engine)
    account = account_of(context)
    if account is not None:  # several accounts: a product sold in another is not this one's orphan
        held |= catalog.catalog().sold_elsewhere(account)
    # The four sides are the snapshot's Parquet files, scanned by DuckDB, never loaded whole.
    drift, local_count, stripe_count = find_drift(local_products, stripe_products, local_prices, stripe_prices, held, held_keys)
    summary = summarize_drift(drift, local_count, stripe_count)
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
