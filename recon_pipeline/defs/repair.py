"""Repair: turn `catalog_drift` into writes to Stripe, then verify the drift is gone.

    catalog_drift ──> catalog_repair   (job: repair_catalog; checks: repair_verified,
                                        mass_drift_breaker, dead_letters_empty)
"""


import os
import time

import dagster as dg
import pandas as pd
from sqlalchemy import func, select

from recon_pipeline.catalog.quarantine import valid_local_frame
from recon_pipeline.catalog.schema import dead_letter
from recon_pipeline.defs.resources import CatalogResource, StripeResource
from recon_pipeline.reconcile import diff_catalog, stripe_frame
from recon_pipeline.settings import Settings
from recon_pipeline.repair import (
    ACTION_ORDER,
    APPLIED,
    DEAD_LETTER,
    OrphanPolicy,
    Repairer,
    fetch_products_by_id,
    plan_repairs,
)
from recon_pipeline.repair.apply import unanswered_products
from recon_pipeline.repair.plan import with_price_tidy

GROUP = "repair"
PREVIEW_ROWS = 30


class RepairConfig(dg.Config):
    """Run config of `catalog_repair` (all optional)."""

    dry_run: bool = False
    """Plan and report, write nothing."""
    orphan_policy: str = os.environ.get("RECON_ORPHAN_POLICY", OrphanPolicy.REPORT.value)
    """What to do with products in Stripe that the catalog lacks: report, archive or adopt."""
    max_write_share: float = float(os.environ.get("RECON_MAX_REPAIR_SHARE", "0.10"))
    """Mass-drift breaker: refuse to repair when more than this share of the catalog would be written."""
    override_breaker: bool = False
    """Repair even above max_write_share (a deliberate, manual decision)."""
    concurrency: int = 8
    """Products repaired in parallel (the client's rate limits still apply)."""


def open_dead_letters(catalog: CatalogResource) -> int:
    with catalog.engine().connect() as conn:
        return conn.execute(select(func.count()).select_from(dead_letter).where(dead_letter.c.resolved_at.is_(None))).scalar_one()


def verify_products(catalog: CatalogResource, stripe: StripeResource, product_ids: list[str]) -> pd.DataFrame:
    """Drift re-derived, from fresh reads of both sides, for the given products only."""
    local = valid_local_frame(catalog.engine(), product_ids)
    remote = stripe_frame(fetch_products_by_id(stripe.gateway(), product_ids))
    return diff_catalog(local, remote)


def _check(name: str, passed: bool, description: str | None, severity=dg.AssetCheckSeverity.ERROR, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name=name,
        asset_key="catalog_repair",
        passed=passed,
        severity=severity,
        description=description,
        metadata=metadata,
    )


@dg.asset(
    group_name=GROUP,
    kinds={"stripe"},
    pool="stripe_api",
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    check_specs=[
        dg.AssetCheckSpec(
            "repair_verified",
            asset="catalog_repair",
            description="After the writes, drift re-derived from fresh reads of the touched products is zero.",
        ),
        dg.AssetCheckSpec(
            "mass_drift_breaker",
            asset="catalog_repair",
            description="Planned writes stay under the breaker's share of the catalog; above it, repair refuses "
            "and waits for a person (run repair_catalog with override_breaker: true).",
        ),
        dg.AssetCheckSpec(
            "dead_letters_empty",
            asset="catalog_repair",
            description="No repair is waiting in dead_letter. WARN: replay with `recon-pipeline dead-letters replay`.",
        ),
    ],
)
def catalog_repair(
    context: dg.AssetExecutionContext,
    config: RepairConfig,
    catalog: CatalogResource,
    stripe: StripeResource,
    catalog_drift: pd.DataFrame,
    local_products: pd.DataFrame,
    stripe_products: pd.DataFrame,
):
    """The writes that bring Stripe back to the catalog, one row per action.

    Plan from `catalog_drift`: create missing products (ids derived from the catalog), update
    mismatched fields, change prices (new Price as default with the lookup_key transferred,
    old one archived), and handle orphans by policy. Products with a write left unanswered in
    the last day (a run killed mid-write) get their price step again. Every write is idempotent and recorded
    in `sync_ledger`; a product that still fails after retries goes to `dead_letter` and the
    run goes on. Then the drift of the touched products is re-derived and must be zero.
    """
    started = time.perf_counter()
    if config.orphan_policy == OrphanPolicy.ADOPT.value and not Settings.from_env().catalog_source.is_own_schema:
        raise dg.Failure(
            "orphan_policy 'adopt' writes orphans into the catalog, but the catalog is your own table or query "
            "(RECON_CATALOG_TABLE / RECON_CATALOG_QUERY), which the pipeline only reads; use 'report' or 'archive'."
        )
    plan = plan_repairs(catalog_drift, local_products, stripe_products, OrphanPolicy(config.orphan_policy))
    # A write left without an answer (a killed run) may have stopped a price change midway.
    plan = with_price_tidy(plan, unanswered_products(catalog.engine()), local_products, stripe_products)
    tripped = plan.write_share > config.max_write_share and not config.override_breaker
    breaker_note = (
        f"{plan.products_to_write} of {plan.catalog_size} products would be written "
        f"({plan.write_share:.1%} > {config.max_write_share:.0%}): refusing to auto-repair"
    )
    gateway = stripe.gateway()
    before = dict(gateway.stats)
    if tripped:
        context.log.error(breaker_note)
        result = Repairer(gateway, catalog.engine(), context.run.run_id).apply_plan(plan, dry_run=True)
    else:
        result = Repairer(gateway, catalog.engine(), context.run.run_id).apply_plan(plan, config.concurrency, dry_run=config.dry_run)
    stats = {k: v - before.get(k, 0) for k, v in gateway.stats.items()}

    outcomes = pd.DataFrame(
        [(o.product_id, o.action, o.status, o.writes, o.detail, o.error or "") for o in result.outcomes],
        columns=["product_id", "action", "status", "writes", "detail", "error"],
    )
    for o in result.outcomes:
        context.log.info(f"{o.status}: {o.action} {o.product_id} {o.detail} {o.error or ''}".rstrip())
    counts = {f"actions/{name}": dg.MetadataValue.int(result.count(APPLIED, name)) for name in ACTION_ORDER}
    yield dg.Output(
        outcomes,
        metadata={
            **counts,
            "planned": dg.MetadataValue.int(len(plan.actions)),
            "applied": dg.MetadataValue.int(result.count(APPLIED)),
            "dead_letters": dg.MetadataValue.int(result.count(DEAD_LETTER)),
            "writes": dg.MetadataValue.int(result.writes),
            "retries": dg.MetadataValue.int(int(stats.get("retries", 0))),
            "rate_limited": dg.MetadataValue.int(int(stats.get("rate_limited", 0))),
            "dry_run": dg.MetadataValue.bool(config.dry_run or tripped),
            "breaker_tripped": dg.MetadataValue.bool(tripped),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            "actions": dg.MetadataValue.md(outcomes.head(PREVIEW_ROWS).to_markdown(index=False) if len(outcomes) else "_Nothing to repair._"),
        },
    )

    yield _check(
        "mass_drift_breaker",
        not tripped,
        breaker_note if tripped else None,
        planned_share=dg.MetadataValue.float(round(plan.write_share, 6)),
        threshold=dg.MetadataValue.float(config.max_write_share),
        overridden=dg.MetadataValue.bool(config.override_breaker),
    )
    letters = open_dead_letters(catalog)
    yield _check(
        "dead_letters_empty",
        letters == 0,
        f"{letters} repairs wait in dead_letter" if letters else None,
        severity=dg.AssetCheckSeverity.WARN,
        open_dead_letters=dg.MetadataValue.int(letters),
    )
    touched = [] if tripped or config.dry_run else result.touched_products
    remaining = verify_products(catalog, stripe, touched)
    yield _check(
        "repair_verified",
        remaining.empty,
        None if remaining.empty else f"{len(remaining)} drift rows remain on {remaining['product_id'].nunique()} repaired products",
        verified_products=dg.MetadataValue.int(len(touched)),
        remaining_drift=dg.MetadataValue.int(len(remaining)),
    )
    if not remaining.empty:
        raise dg.Failure(
            description=f"repair did not converge: {len(remaining)} drift rows remain after applying",
            metadata={"remaining": dg.MetadataValue.md(remaining.head(PREVIEW_ROWS).to_markdown(index=False))},
        )
