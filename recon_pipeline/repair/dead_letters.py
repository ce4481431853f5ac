"""Dead letters: list them, and replay them against the current state of both sides.

A replay does not resend the old request: the product's drift is re-derived from fresh
reads of the catalog and Stripe, and whatever it takes now is applied. A letter is
resolved when that succeeds (or when there is nothing left to do); otherwise it stays
open with the new reason and one more attempt counted.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from sqlalchemy import Engine, select, update

from recon_pipeline.catalog.quarantine import valid_local_frame
from recon_pipeline.catalog.schema import dead_letter
from recon_pipeline.reconcile import diff_catalog, stripe_frame
from recon_pipeline.repair.apply import DEAD_LETTER, Repairer, fetch_products_by_id
from recon_pipeline.repair.plan import ADOPT_ORPHAN, ARCHIVE_ORPHAN, OrphanPolicy, plan_repairs, with_price_tidy
from recon_pipeline.stripe_api import StripeGateway


def list_dead_letters(engine: Engine, include_resolved: bool = False) -> list[dict[str, Any]]:
    query = select(dead_letter).order_by(dead_letter.c.id)
    if not include_resolved:
        query = query.where(dead_letter.c.resolved_at.is_(None))
    with engine.connect() as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def _policy_for(action: str) -> OrphanPolicy:
    return {ARCHIVE_ORPHAN: OrphanPolicy.ARCHIVE, ADOPT_ORPHAN: OrphanPolicy.ADOPT}.get(action, OrphanPolicy.REPORT)


def replay_dead_letters(engine: Engine, gateway: StripeGateway, ids: list[int] | None = None) -> list[dict[str, Any]]:
    """Replay open dead letters (all, or the given ids); returns one result row per letter."""
    letters = [l for l in list_dead_letters(engine) if ids is None or l["id"] in ids]
    results = []
    catalog = valid_local_frame(engine)
    for letter in letters:
        product_id = letter["product_id"]
        local = catalog[catalog["product_id"] == product_id].reset_index(drop=True)
        remote = stripe_frame(fetch_products_by_id(gateway, [product_id]))
        drift = diff_catalog(local, remote)
        plan = with_price_tidy(plan_repairs(drift, local, remote, _policy_for(letter["action"])), [product_id], local, remote)
        repairer = Repairer(gateway, engine, run_id=None, source="replay")
        outcomes = [repairer.apply(action) for action in plan.actions]
        failed = [o for o in outcomes if o.status == DEAD_LETTER]
        now = dt.datetime.now(dt.timezone.utc)
        with engine.begin() as conn:
            if failed:
                conn.execute(
                    update(dead_letter)
                    .where(dead_letter.c.id == letter["id"])
                    .values(attempts=dead_letter.c.attempts + 1, reason=failed[0].error, failed_at=now)
                )
            else:
                done = ", ".join(f"{o.action}: {o.status}" for o in outcomes) or "no drift left"
                conn.execute(
                    update(dead_letter)
                    .where(dead_letter.c.id == letter["id"])
                    .values(resolved_at=now, resolution=f"replayed: {done}")
                )
        results.append({"id": letter["id"], "product_id": product_id, "resolved": not failed, "detail": failed[0].error if failed else done})
    return results


def dead_letters_frame(engine: Engine) -> pd.DataFrame:
    rows = list_dead_letters(engine)
    return pd.DataFrame(rows, columns=["id", "source", "product_id", "action", "reason", "attempts", "failed_at"])
