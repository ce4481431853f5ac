"""Applying a repair plan to Stripe: idempotent writes, a ledger row each, dead letters.

Crash safety comes from four things, so a run killed between any two writes and run again
converges with no duplicate product or price:
- the Stripe product id is derived from the catalog id, so creating it twice is refused
  (`resource_already_exists`) instead of duplicating it, and repair carries on;
- a price is the catalog's by its lookup key: a price created before the run was killed
  holds its key, so the next run finds it and creates nothing;
- every write carries a deterministic Idempotency-Key built from the operation, the object,
  the catalog row's version and the Stripe state it replaces, so a re-run within Stripe's
  24 h window replays, while putting back a value a dashboard edit overwrote is a new write;
- a replaced price is marked (metadata `recon_replaced_by`) before its key moves to the
  replacement; a run cut off after that finds it, keyless and marked, and finishes the
  replacement: default moved, old price archived. Nothing else is archived.

One product failing (after the client's retries) goes to `dead_letter` with the reason;
the others go on.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import stripe
from sqlalchemy import insert, select, update

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import adopt_from_stripe, adopt_prices
from recon_pipeline.catalog.prices import currency_options_params, stripe_price_params
from recon_pipeline.catalog.schema import sync_ledger
from recon_pipeline.reconcile.frames import REPLACED_BY, stripe_product_id
from recon_pipeline.repair.dead_letters import record_dead_letter
from recon_pipeline.repair.plan import (
    ADOPT_ORPHAN,
    ADOPT_PRICE_ORPHAN,
    ARCHIVE_ORPHAN,
    ARCHIVE_PRICE_ORPHAN,
    ARCHIVE_REPLACED,
    CREATE_PRICE,
    CREATE_PRODUCT,
    PRODUCT_FIELDS,
    REPLACE_PRICE,
    REPORT_ORPHAN,
    REPORT_PRICE_ORPHAN,
    SET_DEFAULT_PRICE,
    UPDATE_PRICE,
    UPDATE_PRODUCT,
    RepairAction,
    RepairPlan,
    price_version,
    state_fingerprint,
)
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
    lookup_key: str | None = None
    attempts: int = 0  # requests sent for the write that failed (a dead letter's `attempts`)
    fields: tuple[str, ...] = ()  # the fields the action writes


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


class PriceNotFound(LookupError):
    """No Stripe price holds a lookup key repair needs (to make it the default)."""


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
        key = self._fresh_key(method, path, idempotency_key(f"{method} {path}", product_id, {**params, "_version": version}))
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

    def _fresh_key(self, method: str, path: str, key: str) -> str:
        """The key, unless it is a create whose earlier success Stripe has since lost (the
        product deleted in the dashboard): Stripe would replay that answer for 24 hours and
        create nothing, so the create gets a key of its own, derived from the lost write's
        ledger row (a retry of it derives the same). A create whose object still exists keeps
        its key: a plan read before that create, replayed, makes no second object."""
        if method.lower() != "post" or path not in ("/v1/products", "/v1/prices"):
            return key
        base = key
        for _ in range(10):  # each turn: one more time the object was created and then lost
            with self.engine.connect() as conn:
                done = conn.execute(
                    select(sync_ledger.c.id, sync_ledger.c.object_id).where(sync_ledger.c.idempotency_key == key, sync_ledger.c.status == 200).order_by(sync_ledger.c.id)
                ).first()
            if done is None or not done.object_id or self._exists(f"{path}/{done.object_id}"):
                return key
            key = f"{base}-after-{done.id}"
        return key

    def _exists(self, path: str) -> bool:
        try:
            found = self.gateway.request("get", path)
        except stripe.InvalidRequestError as exc:
            if exc.http_status == 404:
                return False
            raise
        return not found.get("deleted")

    # -- actions --------------------------------------------------------------------------
    def apply(self, action: RepairAction) -> Outcome:
        handler: dict[str, Callable[[RepairAction], int]] = {
            CREATE_PRODUCT: self._create_product,
            UPDATE_PRODUCT: self._update_product,
            CREATE_PRICE: self._create_price,
            REPLACE_PRICE: self._replace_price,
            UPDATE_PRICE: self._update_price,
            SET_DEFAULT_PRICE: self._set_default_price,
            ARCHIVE_REPLACED: self._archive_price,
            ARCHIVE_PRICE_ORPHAN: self._archive_price,
            ADOPT_PRICE_ORPHAN: self._adopt_price_orphan,
            ARCHIVE_ORPHAN: self._archive_orphan,
            ADOPT_ORPHAN: self._adopt_orphan,
        }
        if action.action == REPORT_ORPHAN:
            return Outcome(action.product_id, action.action, REPORTED, 0, "in Stripe, not in the catalog (orphan policy: report)")
        if action.action == REPORT_PRICE_ORPHAN:
            return Outcome(action.product_id, action.action, REPORTED, 0, action.describe(), lookup_key=action.lookup_key, fields=action.fields)
        try:
            writes = handler[action.action](action)
            return Outcome(action.product_id, action.action, APPLIED, writes, action.describe(), lookup_key=action.lookup_key, fields=action.fields)
        except (stripe.StripeError, PriceNotFound) as exc:
            reason = error_text(exc) if isinstance(exc, stripe.StripeError) else str(exc)
            return Outcome(action.product_id, action.action, DEAD_LETTER, 0, action.describe(), reason, action.lookup_key, StripeGateway.attempts_of(exc), action.fields)

    def dead_letter(self, action: RepairAction, reason: str, attempts: int) -> None:
        """Park a failed action in dead_letter with the reason and the requests it sent, replayable later."""
        log.warning("dead letter: %s %s: %s", action.action, action.product_id, reason)
        payload = {"product_id": action.product_id, "action": action.action, "fields": list(action.fields), "lookup_key": action.lookup_key}
        with self.engine.begin() as conn:
            record_dead_letter(conn, self.source, action.product_id, action.action, payload, reason, attempts, self.gateway.account)

    @staticmethod
    def _stripe_id(action: RepairAction) -> str:
        return action.stripe.stripe_id if action.stripe is not None else stripe_product_id(action.product_id)

    def _create_product(self, action: RepairAction) -> int:
        desired = action.wanted
        stripe_id = action.product_id
        filled = tuple(f for f in PRODUCT_FIELDS if f not in ("name", "active", "metadata") and getattr(desired, f) not in (None, "", [], False))
        params: dict[str, Any] = {"id": stripe_id, "name": desired.name, "active": desired.active, "metadata": desired.metadata, **desired.params(filled)}
        try:
            self.write(action.product_id, "post", "/v1/products", params, desired.version)
        except stripe.InvalidRequestError as exc:
            if exc.code != "resource_already_exists":
                raise
            # Created by an earlier, interrupted run: make its fields right instead.
            current = self.gateway.request("get", f"/v1/products/{stripe_id}")
            observed = state_fingerprint(current)  # the product as read, with its `updated`
            self.write(action.product_id, "post", f"/v1/products/{stripe_id}", desired.params(PRODUCT_FIELDS, current.get("metadata")), f"{desired.version}|{observed}")
            return 2
        return 1

    def _update_product(self, action: RepairAction) -> int:
        desired, state = action.wanted, action.found
        self.write(action.product_id, "post", f"/v1/products/{state.stripe_id}", desired.params(action.fields, state.metadata), f"{desired.version}|{state.fingerprint}")
        return 1

    def _create_price(self, action: RepairAction) -> int:
        price = action.wanted_price
        # Keyed on the product's prices in Stripe too: a price the dashboard since took the key from is created again, not replayed.
        # A product not yet in Stripe has none, as one created since whose price is still in flight: the same key.
        prices_state = state_fingerprint(action.stripe.price_ids if action.stripe else ())
        self.write(action.product_id, "post", "/v1/prices", stripe_price_params(price, self._stripe_id(action)), f"{price_version(price)}|create|{prices_state}")
        return 1

    def _replace_price(self, action: RepairAction) -> int:
        """Mark the old price, then create its replacement, which takes the lookup key.

        The mark (metadata `recon_replaced_by`) is what lets a run cut off after the key moved
        finish the job: the old price, now without a key, is known as the catalog's.

        The replacement's idempotency key names only the terms and the price it replaces, not
        the old price's state (which the mark changes): a pass that reads Stripe while an
        earlier pass's create is still in flight, or whose answer was lost, sends the same
        key, and Stripe answers with that one price instead of making a second.
        """
        price, old = action.wanted_price, action.found_price
        replacement = f"{price_version(price)}|{old.price_id}"
        self.write(action.product_id, "post", f"/v1/prices/{old.price_id}", {"metadata": {REPLACED_BY: price.lookup_key}}, f"{replacement}|{old.fingerprint}")
        self.write(action.product_id, "post", "/v1/prices", stripe_price_params(price, self._stripe_id(action)), replacement)
        return 2

    def _update_price(self, action: RepairAction) -> int:
        price, found = action.wanted_price, action.found_price
        params: dict[str, Any] = {}
        for name in action.fields:
            if name == "metadata":
                params["metadata"] = {**{key: "" for key in found.metadata}, **price.metadata}
            elif name == "currency_options":
                params["currency_options"] = currency_options_params(price) or ""
            elif name == "tax_behavior":
                params["tax_behavior"] = price.tax_behavior or "unspecified"
            else:
                params[name] = getattr(price, name)
        self.write(action.product_id, "post", f"/v1/prices/{found.price_id}", params, f"{price_version(price)}|{found.fingerprint}")
        return 1

    def _set_default_price(self, action: RepairAction) -> int:
        key = action.lookup_key
        holders = self.gateway.request("get", "/v1/prices", {"lookup_keys": [key], "limit": 1})["data"]
        if not holders:
            raise PriceNotFound(f"no active Stripe price holds lookup key {key!r}, so it cannot be the default price of {action.product_id!r}")
        stripe_id = self._stripe_id(action)
        # Keyed on the default it replaces: putting back a default the dashboard changed is a new write, not a replay.
        current = action.stripe.default_price_id if action.stripe else None
        self.write(action.product_id, "post", f"/v1/products/{stripe_id}", {"default_price": holders[0]["id"]}, f"{action.wanted.version}|{key}|{holders[0]['id']}|{current}")
        return 1

    def _archive_price(self, action: RepairAction) -> int:
        found = action.found_price
        self.write(action.product_id, "post", f"/v1/prices/{found.price_id}", {"active": False}, f"archive|{found.price_id}|{found.fingerprint}")
        return 1

    def _adopt_price_orphan(self, action: RepairAction) -> int:
        found = action.found_price
        key = action.lookup_key or ""
        writes = 0
        if found.lookup_key is None:  # a price without a key gets one, so the catalog can own it
            self.write(action.product_id, "post", f"/v1/prices/{found.price_id}", {"lookup_key": key}, f"adopt|{found.price_id}")
            writes += 1
        assert found.values is not None
        adopt_prices(self.catalog, [dataclasses.replace(found.values, lookup_key=key, product_id=action.product_id)])
        return writes

    def _archive_orphan(self, action: RepairAction) -> int:
        state = action.found
        self.write(action.product_id, "post", f"/v1/products/{state.stripe_id}", {"active": False}, f"orphan|{state.fingerprint}")
        return 1

    def _adopt_orphan(self, action: RepairAction) -> int:
        """The Stripe product becomes a catalog product, sold in the account it was found in."""
        adopted = dataclasses.replace(action.found.as_catalog_product(action.product_id), account=self.gateway.account)
        adopt_from_stripe(self.catalog, [adopted])
        return 0

    # -- the plan ---------------------------------------------------------------------------
    def apply_plan(self, plan: RepairPlan, concurrency: int = 8, dry_run: bool = False, dead_letters: bool = True, progress: Callable[[int], None] | None = None) -> RepairResult:
        """Apply every action; products in parallel, each product's actions in order.

        A product whose action fails stops there (its later actions depend on it) and, with
        `dead_letters`, is parked in dead_letter; the outbox keeps its own retries instead.
        """
        if dry_run:
            return RepairResult([Outcome(a.product_id, a.action, DRY_RUN, 0, a.describe(), lookup_key=a.lookup_key, fields=a.fields) for a in plan.actions])
        by_product: dict[str, list[RepairAction]] = {}
        for action in plan.actions:
            by_product.setdefault(action.product_id, []).append(action)

        def run(actions: list[RepairAction]) -> list[Outcome]:
            outcomes = []
            for done, action in enumerate(actions, 1):
                outcome = self.apply(action)
                outcomes.append(outcome)
                if outcome.status == DEAD_LETTER:
                    if dead_letters:
                        self.dead_letter(action, outcome.error or "", outcome.attempts)
                    if progress:
                        progress(len(actions) - done + 1)  # the product's later actions are not attempted: count them done
                    break  # later actions of this product depend on this one
                if progress:
                    progress(1)
            return outcomes

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            results = list(pool.map(run, by_product.values()))
        return RepairResult([o for outcomes in results for o in outcomes])
