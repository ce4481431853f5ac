"""Replaying dead letters against the current state of both sides.

A replay does not resend the old request: the product is converged from fresh reads of
the catalog and Stripe, and whatever it takes now is applied. A letter is resolved when
that succeeds (or when there is nothing left to do), with its resolution: which replay
(its id is the `run_id` of its writes in `sync_ledger`) and what it wrote. Otherwise it stays
open with the new reason, and the requests the replay sent are added to its attempts.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass

from recon_pipeline.catalog import Catalog
from recon_pipeline.policies import OrphanPolicy
from recon_pipeline.repair.apply import WriteSource
from recon_pipeline.repair.converge import converge
from recon_pipeline.repair.dead_letters import list_dead_letters, resolve, still_failing
from recon_pipeline.repair.plan import ADOPT_ORPHAN, ARCHIVE_ORPHAN
from recon_pipeline.stripe_api import StripeGateway, by_name


@dataclass
class Replayed:
    id: int
    product_id: str
    resolved: bool
    detail: str


def _policy_for(action: str) -> OrphanPolicy:
    return {ARCHIVE_ORPHAN: OrphanPolicy.ARCHIVE, ADOPT_ORPHAN: OrphanPolicy.ADOPT}.get(action, OrphanPolicy.REPORT)


def replay_dead_letters(catalog: Catalog, gateway: StripeGateway | Mapping[str, StripeGateway], ids: list[int] | None = None) -> list[Replayed]:
    """Replay open dead letters (all, or the given ids); one result per letter. `gateway`: the
    Stripe account, or each account's (by name): a letter is replayed in the account its product
    is sold in (one the catalog no longer has, an orphan's, in the account it failed in)."""
    gateways = by_name(gateway)
    replay_id = f"replay-{uuid.uuid4().hex[:8]}"
    letters = list_dead_letters(catalog.engine, ids=ids)
    sold_in = catalog.accounts_of([letter["product_id"] for letter in letters])
    results = []
    for letter in letters:
        product_id = letter["product_id"]
        account = sold_in.get(product_id, letter["account"])
        if account not in gateways:
            reason = f"product {product_id!r} is sold in the Stripe account {account!r}, which RECON_STRIPE_ACCOUNTS does not name"
            still_failing(catalog.engine, letter["id"], reason, attempts=0)  # nothing sent
            results.append(Replayed(letter["id"], product_id, False, reason))
            continue
        converged = converge(
            catalog,
            gateways[account],
            [product_id],
            orphan_policy=_policy_for(letter["action"]),
            source=WriteSource.REPLAY,
            run_id=replay_id,
            dead_letters=False,
            verify=False,
        )
        error = converged.errors.get(product_id)
        if error is not None:
            sent = sum(o.attempts for o in converged.result.outcomes if o.product_id == product_id and o.error)
            still_failing(catalog.engine, letter["id"], error, attempts=sent)
            results.append(Replayed(letter["id"], product_id, False, error))
            continue
        done = "; ".join(f"{' '.join(filter(None, (o.action, o.detail)))}: {o.status}" for o in converged.result.outcomes) or "nothing to write, no drift left"
        resolve(catalog.engine, letter["id"], f"{replay_id}: {done}")
        results.append(Replayed(letter["id"], product_id, True, done))
    return results
