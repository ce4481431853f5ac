"""Repair: turn `catalog_drift` into writes to Stripe, then verify the drift is gone (group `repair`).

    catalog_drift ──drift_repair_sensor──> catalog_repair   (job: repair_catalog; checks:
                                                            repair_verified, mass_drift_breaker,
                                                            dead_letters_empty)

The writes, the breaker and the verification are `recon_pipeline.repair.converge`; this
module wires it to the drift table and reports.
"""


import time

import dagster as dg
import pandas as pd

from recon_pipeline.catalog import CatalogReadOnly
from recon_pipeline.defs import account_of, per_account, run_id_of
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import ORPHAN_IN_STRIPE, PRICE_ORPHAN_IN_STRIPE, shortened
from recon_pipeline.reconcile.diff import PREVIEW_WIDTH
from recon_pipeline.repair import ACTION_ORDER, APPLIED, DEAD_LETTER, Sides, WriteSource, converge
from recon_pipeline.repair.dead_letters import open_dead_letters
from recon_pipeline.repair.plan import FieldChanges
from recon_pipeline.settings import Settings

GROUP = "repair"
PREVIEW_ROWS = 30
FAILURES_LOGGED = 20


class RepairConfig(dg.Config):
    """Run config of `catalog_repair` (all optional)."""

    dry_run: bool = False
    """Plan and report, write nothing."""
    orphan_policy: str | None = None
    """What to do with products in Stripe that the catalog lacks: report, archive or adopt (unset: RECON_ORPHAN_POLICY)."""
    price_orphan_policy: str | None = None
    """What to do with unmanaged prices of catalog products (no lookup key the catalog owns): report, archive or adopt (unset: RECON_PRICE_ORPHAN_POLICY)."""
    max_write_share: float | None = None
    """Mass-drift breaker: refuse to repair when more than this share of the catalog would be written (unset: RECON_MAX_REPAIR_SHARE)."""
    breaker_floor: int | None = None
    """Mass-drift breaker: hold only when more than this many products and prices would be written too (unset: RECON_BREAKER_FLOOR, default 25)."""
    override_breaker: bool = False
    """Repair even above max_write_share (a deliberate, manual decision)."""
    concurrency: int = 8
    """Products repaired in parallel (the client's rate limits still apply)."""


def _check(name: str, passed: bool, description: str | None, severity=dg.AssetCheckSeverity.ERROR, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(check_name=name, asset_key="catalog_repair", passed=passed, severity=severity, description=description, metadata=metadata)


REPAIR_DESCRIPTION = """The writes that bring Stripe back to the catalog, one row per action, in Stripe's order.

Plan from `catalog_drift`: create missing products (ids derived from the catalog) and
prices (with their lookup keys), update mismatched product fields and mutable price
fields in place, replace a price whose terms changed (the replacement takes its lookup
key, then the default moves, then exactly the replaced price is archived), and handle
orphan products and unmanaged prices by policy. Every write is idempotent and recorded in
`sync_ledger`; a product that still fails after retries goes to `dead_letter` and the run
goes on. Then the drift of the touched products is re-derived and must be zero.
"""


# A multi-asset of one, because only those may leave a check without a result (can_subset):
# repair_verified is not evaluated when nothing was written, and the UI shows it skipped.
@dg.multi_asset(
    outs={"catalog_repair": dg.AssetOut(group_name=GROUP, kinds={"stripe"}, description=REPAIR_DESCRIPTION)},
    pool="stripe_api",
    retry_policy=dg.RetryPolicy(max_retries=3, delay=2.0, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS),
    can_subset=True,
    check_specs=[
        dg.AssetCheckSpec(
            "repair_verified",
            asset="catalog_repair",
            description="After the writes, drift re-derived from fresh reads of the touched products is zero. "
            "Not evaluated when nothing was written (a dry run, or the breaker held).",
        ),
        dg.AssetCheckSpec(
            "mass_drift_breaker",
            asset="catalog_repair",
            blocking=True,
            description="Planned writes stay under the breaker's share of the catalog or under its floor (RECON_BREAKER_FLOOR "
            "objects, default 25); above both, repair writes nothing, "
            "the run fails and waits for a person (`recon-pipeline repair --override-breaker`, or repair_catalog with "
            "override_breaker: true). Expected on the first sync of a new Stripe account.",
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
    policy: ReconPolicy,
    catalog_drift: pd.DataFrame,
    local_products: pd.DataFrame,
    stripe_products: pd.DataFrame,
    local_prices: pd.DataFrame,
    stripe_prices: pd.DataFrame,
):
    """catalog_repair: the plan from catalog_drift applied to Stripe, then verified (see the asset's description)."""
    started = time.perf_counter()
    share = policy.max_repair_share if config.max_write_share is None else config.max_write_share
    floor = policy.breaker_floor if config.breaker_floor is None else config.breaker_floor
    with stripe.calls(catalog, account_of(context)) as gateway:  # with several accounts, this partition's
        before = dict(gateway.stats)
        try:
            converged = converge(
                catalog.catalog(),
                gateway,
                sides=Sides(local_products, stripe_products, local_prices, stripe_prices),
                drift=catalog_drift,
                orphan_policy=policy.orphans(config.orphan_policy),
                price_orphan_policy=policy.price_orphans(config.price_orphan_policy),
                source=WriteSource.REPAIR,
                run_id=run_id_of(context),
                concurrency=config.concurrency,
                dry_run=config.dry_run,
                max_write_share=None if config.override_breaker else share,
                breaker_floor=floor,
                say=context.log.info,
            )
        except CatalogReadOnly as error:
            raise dg.Failure(f"{error} Use orphan_policy 'report' or 'archive'.", allow_retries=False) from None
    plan, result = converged.plan, converged.result
    stats = {k: v - before.get(k, 0) for k, v in gateway.stats.items()}
    breaker_note = (
        f"{plan.objects_to_write} of {plan.catalog_size} products and prices would be written "
        f"({plan.write_share:.1%} > {share:.0%}, and more than {floor}): refusing to auto-repair. If that is right (the first sync "
        "of a new Stripe account, a bulk import), run `recon-pipeline repair --override-breaker`."
    )
    if converged.breaker_tripped:
        context.log.error(breaker_note)

    changes = FieldChanges(catalog_drift)
    outcomes = pd.DataFrame(
        [(o.product_id, o.lookup_key, o.action, changes.of(o.product_id, o.action, o.lookup_key, o.fields) or o.detail, o.status, o.writes, o.detail, o.error or "") for o in result.outcomes],
        columns=["product_id", "lookup_key", "action", "changes", "status", "writes", "detail", "error"],
    )
    held = config.dry_run or converged.breaker_tripped  # planned, nothing written
    # A summary, never a line per write: each write is in sync_ledger, the first rows in `actions`.
    by_status = outcomes.groupby(["status", "action"]).size() if len(outcomes) else pd.Series(dtype=int)
    context.log.info("repair: " + (", ".join(f"{action} {status} {n}" for (status, action), n in by_status.items()) or "nothing to write"))
    failed = [o for o in result.outcomes if o.status == DEAD_LETTER]
    for o in failed[:FAILURES_LOGGED]:
        context.log.warning(f"{o.status}: {o.action} {o.product_id} {o.error or ''}".rstrip())
    if len(failed) > FAILURES_LOGGED:
        context.log.warning(f"... and {len(failed) - FAILURES_LOGGED} more in dead_letter (recon-pipeline dead-letters list)")
    yield dg.Output(
        outcomes,
        output_name="catalog_repair",
        metadata={
            **{f"actions/{name}": dg.MetadataValue.int(result.count(APPLIED, name)) for name in ACTION_ORDER},
            "planned": dg.MetadataValue.int(len(plan.actions)),
            "applied": dg.MetadataValue.int(result.count(APPLIED)),
            "dead_letters": dg.MetadataValue.int(result.count(DEAD_LETTER)),
            "writes": dg.MetadataValue.int(result.writes),
            "retries": dg.MetadataValue.int(int(stats.get("retries", 0))),
            "rate_limited": dg.MetadataValue.int(int(stats.get("rate_limited", 0))),
            "throttle_wait_s": dg.MetadataValue.float(round(float(stats.get("throttle_wait_s", 0.0)), 3)),
            "dry_run": dg.MetadataValue.bool(held),
            "breaker_tripped": dg.MetadataValue.bool(converged.breaker_tripped),
            "duration_s": dg.MetadataValue.float(round(time.perf_counter() - started, 3)),
            "actions": dg.MetadataValue.md(_actions_table(outcomes, plan_only=held)),
        },
    )

    yield _check(
        "mass_drift_breaker",
        not converged.breaker_tripped,
        breaker_note if converged.breaker_tripped else None,
        planned_share=dg.MetadataValue.float(round(plan.write_share, 6)),
        threshold=dg.MetadataValue.float(share),
        floor=dg.MetadataValue.int(floor),
        objects_to_write=dg.MetadataValue.int(plan.objects_to_write),
        overridden=dg.MetadataValue.bool(config.override_breaker),
    )
    letters = open_dead_letters(catalog.engine())
    yield _check(
        "dead_letters_empty",
        letters == 0,
        f"{letters} repairs wait in dead_letter" if letters else None,
        severity=dg.AssetCheckSeverity.WARN,
        open_dead_letters=dg.MetadataValue.int(letters),
    )
    if held:  # nothing was written, so there is nothing to verify: the check is not evaluated (the UI shows it skipped)
        context.log.info("repair_verified not evaluated: " + ("the breaker held the repair" if converged.breaker_tripped else "a dry run") + ", nothing was written")
        return
    remaining = converged.remaining
    yield _check(
        "repair_verified",
        remaining.empty,
        None if remaining.empty else f"{len(remaining)} drift rows remain on {remaining['product_id'].nunique()} repaired products",
        verified_products=dg.MetadataValue.int(len(result.touched_products)),
        remaining_drift=dg.MetadataValue.int(len(remaining)),
    )
    if not remaining.empty:
        # Not retried: the retry would plan from the same catalog_drift; the next reconciliation sees what is left.
        raise dg.Failure(
            description=f"repair did not converge: {len(remaining)} drift rows remain after applying",
            metadata={"remaining": dg.MetadataValue.md(remaining.head(PREVIEW_ROWS).to_markdown(index=False))},
            allow_retries=False,
        )


def _actions_table(outcomes: pd.DataFrame, plan_only: bool) -> str:
    """The first PREVIEW_ROWS actions as a Markdown table, long values shortened: what each
    changes, before -> after (what it is about where it changes no field), and how it went, unless
    the plan was not applied (a dry run, the breaker held)."""
    if not len(outcomes):
        return "_Nothing to repair._"
    columns = ["product_id", "lookup_key", "action", "changes"] + ([] if plan_only else ["status", "writes", "error"])
    shown = outcomes.head(PREVIEW_ROWS)[columns]  # each change's values come shortened
    if "error" in shown:
        shown = shown.assign(error=shown["error"].map(lambda text: shortened(text, 2 * PREVIEW_WIDTH)))
    more = f"\n\n_The first {PREVIEW_ROWS} of {len(outcomes)}; `recon-pipeline repair --dry-run` lists them all._" if len(outcomes) > PREVIEW_ROWS else ""
    return shown.to_markdown(index=False) + more


repair_catalog = dg.define_asset_job(
    "repair_catalog",
    selection=dg.AssetSelection.assets(catalog_repair),
    description="Plan writes from catalog_drift, apply them (idempotent, retried, recorded in sync_ledger; "
    "failures to dead_letter), and verify the repaired products have no drift left.",
)


@dg.asset_sensor(asset_key=dg.AssetKey("catalog_drift"), job=repair_catalog, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def drift_repair_sensor(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry, policy: ReconPolicy, catalog: CatalogResource):
    """Requests one `repair_catalog` run for each `catalog_drift` materialization with drift
    that repair would write: orphans the policies only report (unmanaged prices, by default)
    are not a reason to run it, nor a catalog_drift derived from another catalog (a run
    tagged with another `recon/catalog`).

    The run's mass-drift breaker still decides whether to write: above its share of the
    catalog it refuses, fails the `mass_drift_breaker` check and the alert sensor reports it.
    """
    if not catalog.made(context.instance.get_run_by_id(asset_event.run_id)):
        return dg.SkipReason(f"catalog_drift from run {asset_event.run_id[:8]} was derived from another catalog")
    materialization = asset_event.asset_materialization
    metadata = materialization.metadata if materialization else {}

    def rows(key: str) -> int:
        return int(getattr(metadata.get(key), "value", 0) or 0)

    drift_rows = rows("drift/total")
    reported = (rows(f"drift/{ORPHAN_IN_STRIPE}") if policy.orphans() is OrphanPolicy.REPORT else 0) + (
        rows(f"drift/{PRICE_ORPHAN_IN_STRIPE}") if policy.price_orphans() is OrphanPolicy.REPORT else 0
    )
    if drift_rows == reported:
        why = "no drift" if drift_rows == 0 else f"only orphans the policies report ({reported} rows)"
        return dg.SkipReason(f"catalog_drift from run {asset_event.run_id[:8]} has {why}")
    account = materialization.partition if materialization else None  # with several Stripe accounts: repair that one
    return dg.RunRequest(
        run_key=f"catalog_drift:{asset_event.run_id}" + (f":{account}" if account else ""),
        partition_key=account,
        tags={"recon/trigger": "drift_repair_sensor", "recon/drift_rows": str(drift_rows)},
    )


def build_defs(settings: Settings) -> dg.Definitions:
    """The repair asset, its job, and the sensor that launches it when drift is found."""
    return dg.Definitions(assets=per_account([catalog_repair], settings.account_names), jobs=[repair_catalog], sensors=[drift_repair_sensor])
