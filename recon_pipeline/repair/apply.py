"""Applying a repair plan to Stripe: idempotent writes, a ledger row each, dead letters.

Crash safety comes from three things, so a run killed at any point and run again converges
with no duplicate product or price:
- the Stripe product id is derived from the catalog id, so creating it twice is refused
  (`resource_already_exists`) instead of duplicating it, and repair carries on;
- every write carries a deterministic Idempotency-Key built from the operation, the object,
  the catalog row's version and the Stripe state it replaces (for a product write the
  product as read, with its `updated`; for a price step the product's active prices), so a
  re-run within Stripe's 24 h window replays, while putting back a value a dashboard edit
  overwrote is a new write, not a replay;
- before creating a price, repair looks for a price of the product that already has the
  wanted amount, currency and interval, and reuses it (reactivating it if it was archived);
  after switching the default it archives every other active price, which also cleans up
  after a run killed midway.

One product failing (after the client's retries) goes to `dead_letter` with the reason;
the others go on.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import stripe
from sqlalchemy import Engine, insert, select, update

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import adopt_from_stripe
from recon_pipeline.catalog.schema import sync_ledger
from recon_pipeline.repair.dead_letters import record_dead_letter
from recon_pipeline.repair.plan import ADOPT_ORPHAN, ARCHIVE_ORPHAN, CHANGE_PRICE, CREATE_PRODUCT, REPORT_ORPHAN, UPDATE_PRODUCT, DesiredProduct, RepairAction, RepairPlan, state_fingerprint
from recon_pipeline.stripe_api import CredentialsRefused, StripeGateway, error_text, idempotency_key

log = logging.getLogger(__name__)

# What became of one action.
APPLIED, REPORTED, DRY_RUN, DEAD_LETTER = "applied", "reported", "dry_run", "dead_letter"


class WriteSource(StrEnum):
    """Which path made a write to Stripe (sync_ledger.source, dead_letter.source)."""

    REPAIR = "repair"
    OUTBOX = "outbox"
    REPLAY = "replay"
    BACKFILL = "backfill"


@dataclass
class Outcome:
    product_id: str
    action: str
    status: str
    writes: int = 0
    detail: str = ""
    error: str | None = None


@dataclass
class RepairResult:
    outcomes: list[Outcome] = field(default_factory=list)

    def count(self, status: str | None = None, action: str | None = None) -> int:
        return sum((status is None or o.status == status) and (action is None or o.action == action) for o in self.outcomes)

    @property
    def writes(self) -> int:
        return sum(o.writes for o in self.outcomes)

    @property
    def touched_products(self) -> list[str]:
        return sorted({o.product_id for o in self.outcomes if o.status == APPLIED})

    @property
    def errors(self) -> dict[str, str]:
        """{product_id: Stripe's reason} for every product whose writes failed."""
        return {o.product_id: o.error or "" for o in self.outcomes if o.status == DEAD_LETTER}


def lookup_key_for(product_id: str) -> str:
    """The lookup_key of a product's current price; it moves to each new price."""
    return f"{product_id}:default"


class Repairer:
    """Applies repair actions through the one Stripe client wrapper, recording every write."""

    def __init__(self, gateway: StripeGateway, catalog: Catalog, run_id: str | None = None, source: WriteSource = WriteSource.REPAIR):
        self.gateway = gateway
        self.catalog = catalog
        self.engine = catalog.engine
        self.run_id = run_id
        self.source = WriteSource(source)

    # -- the ledger ---------------------------------------------------------------------
    def write(self, product_id: str, method: str, path: str, params: dict[str, Any], version: str) -> dict[str, Any]:
        """One write to Stripe with a deterministic key, recorded in sync_ledger whatever happens.

        The ledger row is written before the request is sent: Stripe's event for this write
        can arrive (webhook) before the response, and the inbox must already recognise it
        as our own echo.
        """
        key = idempotency_key(f"{method} {path}", product_id, {**params, "_version": version})
        with self.engine.begin() as conn:
            inserted = conn.execute(
                insert(sync_ledger).values(
                    at=dt.datetime.now(dt.UTC),
                    source=self.source,
                    run_id=self.run_id,
                    product_id=product_id,
                    method=method.upper(),
                    path=path,
                    idempotency_key=key,
                    request=params,
                )
            ).inserted_primary_key
        ledger_id = inserted[0] if inserted else None
        status, object_id, error = None, None, None
        try:
            response = self.gateway.request(method, path, params=params, idempotency_key=key)
            status, object_id = 200, response.get("id")
            return response
        except stripe.StripeError as exc:
            status, error = exc.http_status, error_text(exc)
            raise
        except CredentialsRefused as refused:
            status, error = refused.status, str(refused)
            raise
        finally:
            with self.engine.begin() as conn:
                conn.execute(update(sync_ledger).where(sync_ledger.c.id == ledger_id).values(status=status, object_id=object_id, error=error))

    # -- actions --------------------------------------------------------------------------
    def apply(self, action: RepairAction) -> Outcome:
        handler: dict[str, Callable[[RepairAction], int]] = {
            CREATE_PRODUCT: self._create_product,
            UPDATE_PRODUCT: self._update_product,
            CHANGE_PRICE: self._change_price,
            ARCHIVE_ORPHAN: self._archive_orphan,
            ADOPT_ORPHAN: self._adopt_orphan,
        }
        if action.action == REPORT_ORPHAN:
            return Outcome(action.product_id, action.action, REPORTED, 0, "in Stripe, not in the catalog (orphan policy: report)")
        try:
            writes = handler[action.action](action)
            return Outcome(action.product_id, action.action, APPLIED, writes, action.describe())
        except stripe.StripeError as exc:
            return Outcome(action.product_id, action.action, DEAD_LETTER, 0, action.describe(), error_text(exc))

    def dead_letter(self, action: RepairAction, reason: str) -> None:
        """Park a failed action in dead_letter with the reason, replayable later."""
        log.warning("dead letter: %s %s: %s", action.action, action.product_id, reason)
        payload = {"product_id": action.product_id, "action": action.action, "fields": list(action.fields)}
        with self.engine.begin() as conn:
            record_dead_letter(conn, self.source, action.product_id, action.action, payload, reason, self.gateway.retry.max_attempts)

    def _product_params(self, desired: DesiredProduct, stripe_metadata: dict[str, str] | None) -> dict[str, Any]:
        metadata: dict[str, str] = dict(desired.metadata)
        for key in stripe_metadata or {}:
            metadata.setdefault(key, "")  # an empty value removes a key Stripe has and the catalog does not
        return {
            "name": desired.name,
            "description": desired.description or "",
            "active": desired.active,
            "metadata": metadata,
        }

    def _create_product(self, action: RepairAction) -> int:
        desired = action.wanted
        stripe_id = action.product_id
        params: dict[str, Any] = {"id": stripe_id, "name": desired.name, "active": desired.active, "metadata": desired.metadata}
        if desired.description:
            params["description"] = desired.description
        writes = 1
        try:
            self.write(action.product_id, "post", "/v1/products", params, desired.version)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_already_exists":
                raise
            # Created by an earlier, interrupted run: make its fields right instead.
            current = self.gateway.request("get", f"/v1/products/{stripe_id}")
            observed = state_fingerprint(current)  # the product as read, with its `updated`
            self.write(action.product_id, "post", f"/v1/products/{stripe_id}", self._product_params(desired, current.get("metadata")), f"{desired.version}|{observed}")
            writes += 1
        if desired.price is not None:
            writes += self._set_price(action.product_id, stripe_id, desired)
        return writes

    def _update_product(self, action: RepairAction) -> int:
        desired, state = action.wanted, action.found
        params = self._product_params(desired, state.metadata)
        wanted = {f: params[f] for f in action.fields}
        self.write(action.product_id, "post", f"/v1/products/{state.stripe_id}", wanted, f"{desired.version}|{state.fingerprint}")
        return 1

    def _change_price(self, action: RepairAction) -> int:
        return self._set_price(action.product_id, action.found.stripe_id, action.wanted)

    def _set_price(self, product_id: str, stripe_id: str, desired: DesiredProduct) -> int:
        # Stripe lists active prices unless asked for archived ones (`active=false`).
        active_prices = list(self.gateway.list_all("/v1/prices", params={"product": stripe_id, "active": True, "limit": 100}))
        # Keys name the catalog version and the active prices replaced. Not the product's own
        # state: an earlier attempt's product write changes that, and a retry must replay the
        # same keys, or a price creation still in flight would be made twice.
        version = f"{desired.version}|" + state_fingerprint(sorted(p["id"] for p in active_prices))
        writes = 0
        new_price_id = None
        if desired.price is not None:
            amount, currency, interval = desired.price
            # Reuse a price that already has the wanted terms: an active one as it is, an
            # archived one (say, archived in the dashboard) by reactivating it, so going back
            # to an earlier price never mints a second identical Price.
            matching = [p for p in active_prices if _price_matches(p, amount, currency, interval)]
            if not matching:
                archived = self.gateway.list_all("/v1/prices", params={"product": stripe_id, "active": False, "limit": 100})
                matching = [p for p in archived if _price_matches(p, amount, currency, interval)]
            if matching:
                new_price_id = matching[0]["id"]
                if not matching[0].get("active"):
                    reactivate = {"active": True, "lookup_key": lookup_key_for(product_id), "transfer_lookup_key": True}
                    self.write(product_id, "post", f"/v1/prices/{new_price_id}", reactivate, version)
                    writes += 1
            else:
                params: dict[str, Any] = {
                    "product": stripe_id,
                    "unit_amount": amount,
                    "currency": currency,
                    "lookup_key": lookup_key_for(product_id),
                    "transfer_lookup_key": True,
                }
                if interval:
                    params["recurring"] = {"interval": interval}
                new_price_id = self.write(product_id, "post", "/v1/prices", params, version)["id"]
                writes += 1
            self.write(product_id, "post", f"/v1/products/{stripe_id}", {"default_price": new_price_id}, version)
            writes += 1
        # Stripe keeps a product's default price once set (it cannot be unset or archived):
        # with no price in the catalog, the default stays and the others are archived.
        keep = new_price_id or self.gateway.request("get", f"/v1/products/{stripe_id}").get("default_price")
        for price in active_prices:
            if price["id"] != keep:
                self.write(product_id, "post", f"/v1/prices/{price['id']}", {"active": False}, version)
                writes += 1
        return writes

    def _archive_orphan(self, action: RepairAction) -> int:
        state = action.found
        self.write(action.product_id, "post", f"/v1/products/{state.stripe_id}", {"active": False}, f"orphan|{state.fingerprint}")
        return 1

    def _adopt_orphan(self, action: RepairAction) -> int:
        adopt_from_stripe(self.catalog, [action.found.as_catalog_product(action.product_id)])
        return 0

    # -- the plan ---------------------------------------------------------------------------
    def apply_plan(self, plan: RepairPlan, concurrency: int = 8, dry_run: bool = False, dead_letters: bool = True) -> RepairResult:
        """Apply every action; products in parallel, each product's actions in order.

        A product whose action fails stops there (its later actions depend on it) and, with
        `dead_letters`, is parked in dead_letter; the outbox keeps its own retries instead.
        """
        if dry_run:
            return RepairResult([Outcome(a.product_id, a.action, DRY_RUN, 0, a.describe()) for a in plan.actions])
        by_product: dict[str, list[RepairAction]] = {}
        for action in plan.actions:
            by_product.setdefault(action.product_id, []).append(action)

        def run(actions: list[RepairAction]) -> list[Outcome]:
            outcomes = []
            for action in actions:
                outcome = self.apply(action)
                outcomes.append(outcome)
                if outcome.status == DEAD_LETTER:
                    if dead_letters:
                        self.dead_letter(action, outcome.error or "")
                    break  # later actions of this product depend on this one
            return outcomes

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            results = list(pool.map(run, by_product.values()))
        return RepairResult([o for outcomes in results for o in outcomes])


def unanswered_products(engine: Engine, within: dt.timedelta = dt.timedelta(hours=24)) -> set[str]:
    """Products with a recent write whose answer never came (a run killed mid-write, a connection lost for good).

    The ledger row of such a write has no status: Stripe may or may not have done it.
    """
    since = dt.datetime.now(dt.UTC) - within
    with engine.connect() as conn:
        rows = conn.execute(select(sync_ledger.c.product_id).where(sync_ledger.c.status.is_(None), sync_ledger.c.at >= since).distinct())
        return {row.product_id for row in rows}


def _price_matches(price: dict[str, Any], amount: int, currency: str, interval: str | None) -> bool:
    recurring = price.get("recurring") or {}
    return (
        price.get("unit_amount") == amount
        and (price.get("currency") or "").lower() == currency.lower()
        and (recurring.get("interval") or None) == (interval or None)
    )
