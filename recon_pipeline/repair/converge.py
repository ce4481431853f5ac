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

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from recon_pipeline.catalog import Catalog
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.reconcile import diff_catalog, empty_drift, stripe_frame
from recon_pipeline.repair.apply import Repairer, RepairResult, WriteSource
from recon_pipeline.repair.plan import RepairPlan, plan_repairs, with_price_tidy
from recon_pipeline.stripe_api import StripeGateway, fetch_products_by_id, fetch_products_snapshot


@dataclass
class Sides:
    """Both sides as canonical frames: the catalog's valid rows and Stripe's products."""

    local: pd.DataFrame
    stripe: pd.DataFrame

    def drift(self) -> pd.DataFrame:
        return diff_catalog(self.local, self.stripe)


def read_sides(catalog: Catalog, gateway: StripeGateway, ids: Iterable[str] | None = None) -> Sides:
    """Both sides read now: every product (the whole account, paged concurrently), or the given ids."""
    if ids is None:
        return Sides(catalog.valid_frame(), stripe_frame(fetch_products_snapshot(gateway).products))
    wanted = sorted(set(ids))
    return Sides(catalog.valid_frame(wanted), stripe_frame(fetch_products_by_id(gateway, wanted)))


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
        """{product_id: Stripe's reason} for the products that could not be written."""
        return self.result.errors


def converge(
    catalog: Catalog,
    gateway: StripeGateway,
    ids: Iterable[str] | None = None,
    *,
    sides: Sides | None = None,
    drift: pd.DataFrame | None = None,
    orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
    retrying: Iterable[str] = (),
    source: WriteSource = WriteSource.REPAIR,
    run_id: str | None = None,
    concurrency: int = 8,
    dry_run: bool = False,
    max_write_share: float | None = None,
    dead_letters: bool = True,
    verify: bool = True,
) -> Converged:
    """Bring Stripe to the catalog for the given products (all, when `ids` is None).

    - `sides`/`drift`: what was already read (the repair asset's snapshots); else read now.
    - `retrying`: products whose earlier write was cut off; their price step runs again.
    - `max_write_share`: the mass-drift breaker; above it nothing is written (a dry run).
    - `dead_letters`: park a product that fails in dead_letter (else just report it).
    - `verify`: re-read the written products afterwards; what still differs is `remaining`.
    """
    orphan_policy = OrphanPolicy(orphan_policy)
    if orphan_policy is OrphanPolicy.ADOPT:
        catalog.require_writable("orphan_policy 'adopt'")
    sides = sides if sides is not None else read_sides(catalog, gateway, ids)
    drift = sides.drift() if drift is None else drift
    plan = with_price_tidy(plan_repairs(drift, sides.local, sides.stripe, orphan_policy), retrying, sides.local, sides.stripe)
    tripped = max_write_share is not None and plan.write_share > max_write_share
    repairer = Repairer(gateway, catalog, run_id, source)
    result = repairer.apply_plan(plan, concurrency, dry_run=dry_run or tripped, dead_letters=dead_letters)
    written = result.touched_products if verify else []
    remaining = read_sides(catalog, gateway, written).drift() if written else empty_drift()
    return Converged(sides, plan, result, remaining, tripped)
