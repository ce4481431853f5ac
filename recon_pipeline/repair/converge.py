"""Converge: read both sides for some products, diff, plan, apply, verify. Written once.

Every path that brings Stripe to the catalog goes through `converge`: the repair asset,
the hourly repair, the outbox push, a dead-letter replay, the drill and the benchmarks.
They differ only in what they pass:

| caller | products | what else |
| --- | --- | --- |
| `catalog_repair` | those in `catalog_drift` (its snapshots as `sides`) | orphan policy, breaker, dead letters, verify |
| `hourly_repair` | touched in the hours | verify |
| outbox push | the claimed products | no dead letters (the outbox retries itself), no verify |
| dead-letter replay | the letter's product | its orphan policy |

`read_sides` and `full_drift` are the first half alone (read, diff), for the assets and
checks that only look.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import pandas as pd

from recon_pipeline.catalog import Catalog
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.progress import Progress
from recon_pipeline.reconcile import ORPHAN_IN_STRIPE, PRICE_ORPHAN_IN_STRIPE, diff_catalog, empty_drift
from recon_pipeline.reconcile.frames import catalog_frames, stripe_product_id
from recon_pipeline.reconcile.snapshot import fetch_prices_of, fetch_prices_snapshot, fetch_products_by_id, fetch_products_snapshot
from recon_pipeline.repair.apply import Repairer, RepairResult, WriteSource
from recon_pipeline.repair.plan import REPORT_ORPHAN, REPORT_PRICE_ORPHAN, Deleted, RepairPlan, plan_repairs
from recon_pipeline.stripe_api import StripeGateway


@dataclass
class Sides:
    """Both sides as canonical frames: the catalog's valid products and prices, Stripe's."""

    local: pd.DataFrame
    stripe: pd.DataFrame
    local_prices: pd.DataFrame
    stripe_prices: pd.DataFrame
    unread: dict[str, str] = field(default_factory=dict)  # product id -> why its prices could not be read

    def drift(self) -> pd.DataFrame:
        return diff_catalog(self.local, self.stripe, self.local_prices, self.stripe_prices)


def read_sides(catalog: Catalog, gateway: StripeGateway, ids: Iterable[str] | None = None) -> Sides:
    """Both sides read now, for the gateway's Stripe account: everything (the whole account,
    paged concurrently), or the given products (and the prices of theirs the catalog owns:
    see `fetch_prices_of`). The catalog side is the products sold in that account."""
    if ids is None:
        local, local_prices = catalog_frames(catalog, account=gateway.account)
        stripe, stripe_prices = not_sold_elsewhere(fetch_products_snapshot(gateway).whole(), fetch_prices_snapshot(gateway).whole(), catalog.sold_elsewhere(gateway.account))
        return Sides(local, stripe, local_prices, stripe_prices)
    # Only the account's own products: one sold in another account is never read or written here.
    elsewhere = {p for p, account in catalog.accounts_of(set(ids)).items() if account != gateway.account}
    wanted = sorted(set(ids) - elsewhere)
    local, local_prices = catalog_frames(catalog, wanted, account=gateway.account)
    keys = local_prices.groupby("product_id")["lookup_key"].agg(set).to_dict() if len(local_prices) else {}
    stripe = fetch_products_by_id(gateway, [stripe_product_id(i) for i in wanted])
    # A product not in Stripe has no prices there: only the prices of those that are are read.
    present = set(stripe["stripe_id"])
    unread: dict[str, str] = {}
    prices = fetch_prices_of(gateway, {stripe_product_id(p): keys.get(p, set()) for p in wanted if stripe_product_id(p) in present}, unread=unread)
    if not unread:
        return Sides(local, stripe, local_prices, prices)
    # A product whose prices could not be read is left for the next pass, not half-compared.
    skipped = {p for p in wanted if stripe_product_id(p) in unread}
    return Sides(
        local[~local["product_id"].isin(skipped)].reset_index(drop=True),
        stripe[~stripe["product_id"].isin(skipped)].reset_index(drop=True),
        local_prices[~local_prices["product_id"].isin(skipped)].reset_index(drop=True),
        prices,
        {p: f"its prices could not be read: {unread[stripe_product_id(p)]}" for p in skipped},
    )


def not_sold_elsewhere(stripe: pd.DataFrame, stripe_prices: pd.DataFrame, elsewhere: set[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An account's Stripe products and prices without those of catalog products sold in another
    account (a product that moved accounts, say): left alone there, never an orphan."""
    if not elsewhere:
        return stripe, stripe_prices
    return (
        stripe[~stripe["product_id"].isin(elsewhere)].reset_index(drop=True),
        stripe_prices[~stripe_prices["product_id"].isin(elsewhere)].reset_index(drop=True),
    )


def full_drift(catalog: Catalog, gateway: StripeGateway) -> pd.DataFrame:
    """The drift between the whole catalog (its valid rows) and the whole Stripe account, read now."""
    return read_sides(catalog, gateway).drift()


@dataclass
class Converged:
    sides: Sides
    plan: RepairPlan
    result: RepairResult
    remaining: pd.DataFrame  # drift of the written products, re-read after the writes
    breaker_tripped: bool = False

    @property
    def errors(self) -> dict[str, str]:
        """{product_id: Stripe's reason} for the products that could not be read or written."""
        return {**self.sides.unread, **self.result.errors}


def converge(
    catalog: Catalog,
    gateway: StripeGateway,
    ids: Iterable[str] | None = None,
    *,
    sides: Sides | None = None,
    drift: pd.DataFrame | None = None,
    orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
    price_orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
    source: WriteSource = WriteSource.REPAIR,
    run_id: str | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
    max_write_share: float | None = None,
    breaker_floor: int = 0,
    dead_letters: bool = True,
    verify: bool = True,
    say: Callable[[str], None] | None = None,
    deleted: Deleted | None = None,
) -> Converged:
    """Bring Stripe to the catalog for the given products (all, when `ids` is None).

    - `sides`/`drift`: what was already read (the repair asset's snapshots); else read now.
    - `max_write_share`, `breaker_floor`: the mass-drift breaker: above that share of the
      catalog (products and prices written / in the catalog) *and* above that many objects,
      nothing is written (a dry run). The floor lets routine edits of a small catalog through.
    - `dead_letters`: park a product that fails in dead_letter (else just report it).
    - `verify`: re-read the written products afterwards; what still differs is `remaining`.
    - `say`: where progress goes (about every 10 s: actions done/total, rate, ETA; then a summary).
    - `deleted`: what the catalog deleted (captured deletes): archived in Stripe whatever the orphan policies.
    """
    orphan_policy, price_orphan_policy = OrphanPolicy(orphan_policy), OrphanPolicy(price_orphan_policy)
    for name, policy in (("orphan_policy", orphan_policy), ("price_orphan_policy", price_orphan_policy)):
        if policy is OrphanPolicy.ADOPT:
            catalog.require_own_tables(f"{name} 'adopt'")
    sides = sides if sides is not None else read_sides(catalog, gateway, ids)
    drift = sides.drift() if drift is None else drift
    plan = plan_repairs(drift, sides.local, sides.stripe, sides.local_prices, sides.stripe_prices, orphan_policy, price_orphan_policy, deleted)
    tripped = max_write_share is not None and plan.write_share > max_write_share and plan.objects_to_write > breaker_floor
    repairer = Repairer(gateway, catalog, run_id, source)
    progress = Progress("repair actions", len(plan.actions), say or _silent)
    result = repairer.apply_plan(plan, concurrency, dry_run=dry_run or tripped, dead_letters=dead_letters, progress=progress.advance)
    if say and plan.actions and not (dry_run or tripped):
        say(progress.summary())
    written = result.touched_products if verify else []
    remaining = read_sides(catalog, gateway, written).drift() if written else empty_drift()
    return Converged(sides, plan, result, _not_left_alone(remaining, plan), tripped)


def _silent(line: str) -> None:
    pass


def _not_left_alone(drift: pd.DataFrame, plan: RepairPlan) -> pd.DataFrame:
    """The drift that repair should have removed: without the orphans it reported by policy."""
    reported_products = {a.product_id for a in plan.actions if a.action == REPORT_ORPHAN}
    reported_prices = {a.stripe_price.price_id for a in plan.actions if a.action == REPORT_PRICE_ORPHAN and a.stripe_price}
    left_alone = ((drift["kind"] == ORPHAN_IN_STRIPE) & drift["product_id"].isin(reported_products)) | (
        (drift["kind"] == PRICE_ORPHAN_IN_STRIPE) & drift["stripe_value"].isin(reported_prices)
    )
    return drift[~left_alone].reset_index(drop=True)

