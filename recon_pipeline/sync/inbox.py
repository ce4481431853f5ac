"""The inbox: Stripe events into the catalog, with ownership, conflict policy and an audit trail.

Events arrive from two places, the webhook receiver and the events poller, into one
`inbox` table unique by event id (a duplicate or a replay is a no-op). `apply_inbox`
takes them in order of `created` and, for each:

1. recognises our own writes coming back (the event's idempotency key is in
   `sync_ledger`): an *echo*, not applied, so nothing bounces back and forth;
2. refuses anything older than what the catalog has already seen of that product
   (`stripe_seen`, by the object's `updated`): an older event never overwrites newer state;
3. compares the fields the catalog owns that the event changed (for an update,
   `previous_attributes`) with the catalog's values: a product's fields (OWNED_FIELDS), or
   a price's (PRICE_OWNED_FIELDS) when the catalog owns its lookup key; each difference is
   a conflict decided by the policy:
   - `local_wins` (default): the catalog keeps its value, and an outbox row puts it back
     in Stripe;
   - `stripe_wins`: the catalog takes Stripe's value (no outbox row: it must not bounce);
   - `latest_wins`: whichever changed last, the Stripe object's `updated` or the catalog
     row's `updated_at`;
4. writes every decision to `audit`: who, what, before, after, why.

A price whose lookup key the catalog does not own, on a catalog product, is unmanaged: the
event is recorded (audit `price_unmanaged`) and nothing is written, unless
RECON_PRICE_ORPHAN_POLICY is `adopt` (our own catalog only): then the price joins `prices`.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import pandas as pd
import stripe
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog import audit as audit_trail
from recon_pipeline.catalog.changes import adopt_from_stripe, adopt_prices, enqueue, take_from_stripe, take_price_from_stripe
from recon_pipeline.catalog.schema import InboxStatus, inbox, prices, stripe_seen, sync_ledger
from recon_pipeline.fields import price_attributes
from recon_pipeline.names import DEFAULT_ACCOUNT
from recon_pipeline.policies import ConflictPolicy, OrphanPolicy
from recon_pipeline.reconcile.frames import (
    COMPARED_FIELDS,
    PRICE_COMPARED_FIELDS,
    catalog_id_from_stripe,
    local_frame,
    local_price_frame,
    stripe_frame,
    stripe_price_frame,
)
from recon_pipeline.repair.plan import desired_from_row, price_from_row
from recon_pipeline.stripe_api import StripeGateway, by_name, error_text

OWNED_FIELDS = COMPARED_FIELDS
PRICE_OWNED_FIELDS = PRICE_COMPARED_FIELDS
PRODUCT_EVENTS = ("product.created", "product.updated", "product.deleted")
PRICE_EVENTS = ("price.created", "price.updated", "price.deleted")
# Every event type the catalog listens to (webhook endpoints, the poller, backfills).
EVENT_TYPES = [*PRODUCT_EVENTS, *PRICE_EVENTS]
# What a changed attribute of a Stripe price (previous_attributes) is among the price fields.
PRICE_ATTRIBUTES = price_attributes()


class EventSource(StrEnum):
    """Where an event entered the inbox (inbox.source)."""

    WEBHOOK = "webhook"
    POLLER = "poller"
    BACKFILL = "backfill"


class Decision(StrEnum):
    """What the inbox decided for one field or product (audit.decision)."""

    KEPT_LOCAL = "conflict_local_wins"  # the catalog keeps its value; an outbox row puts it back in Stripe
    TOOK_STRIPE = "conflict_stripe_wins"  # the catalog takes Stripe's value
    ADOPTED = "adopted"  # a product (or price) only Stripe had, now in the catalog
    ORPHAN_REPORTED = "orphan_reported"  # a product only Stripe has, left alone
    PRICE_UNMANAGED = "price_unmanaged"  # a price of a catalog product without a lookup key the catalog owns, left alone


class MalformedEvent(ValueError):
    """An event body that is not a Stripe event; the message says what is missing."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def parse_event(body: bytes | str | Mapping[str, Any]) -> dict[str, Any]:
    """A Stripe event from JSON, or MalformedEvent naming what is wrong."""
    if isinstance(body, (bytes, str)):
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError) as error:
            raise MalformedEvent(f"the body is not JSON ({error})") from None
    else:
        event = dict(body)
    if not isinstance(event, dict) or event.get("object") != "event":
        raise MalformedEvent("the body is not a Stripe event (object != 'event')")
    for name, kind in (("id", str), ("type", str), ("created", int), ("data", dict)):
        if not isinstance(event.get(name), kind):
            raise MalformedEvent(f"the event has no valid {name!r}")
    if not isinstance(event["data"].get("object"), dict):
        raise MalformedEvent("the event has no data.object")
    return event


def store_event(engine: Engine, event: Mapping[str, Any], source: EventSource, account: str = DEFAULT_ACCOUNT) -> bool:
    """Put an event in the inbox, from the Stripe `account` (a name of RECON_STRIPE_ACCOUNTS);
    False when it was already there (a duplicate or replay)."""
    event = parse_event(event)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(inbox).values(
                    event_id=event["id"],
                    type=event["type"],
                    created=event["created"],
                    object_id=event["data"]["object"].get("id"),
                    payload=event,
                    source=EventSource(source),
                    account=account,
                    received_at=_now(),
                    status=InboxStatus.RECEIVED,
                )
            )
        return True
    except IntegrityError:
        return False


@dataclass
class ApplyResult:
    """What one pass over the inbox did, by what became of each event."""

    applied: int = 0
    """Events applied: their product's owned fields decided, audited."""
    echoes: int = 0
    """Our own writes coming back (their idempotency key is in sync_ledger)."""
    stale: int = 0
    """Events older than what the catalog has already seen of their product."""
    ignored: int = 0
    """Events the catalog does not act on (a price of a product it does not have)."""
    conflicts: int = 0
    """Owned fields Stripe changed, decided by the conflict policy."""
    decisions: list[str] = field(default_factory=list)
    waiting: int = 0
    """Events left for the next pass because Stripe could not be reached."""
    stripe_error: str | None = None
    api_versions: Counter = field(default_factory=Counter)
    """Events by the API version Stripe rendered them at."""
    version_mismatches: int = 0
    """Events rendered at another API version than RECON_STRIPE_API_VERSION (fields may differ in shape)."""


def other_version(event: Mapping[str, Any], expected: str | None) -> bool:
    """Whether Stripe rendered this event at another API version than the one the pipeline pins."""
    return bool(expected) and event.get("api_version") != expected


def _first(frame: pd.DataFrame) -> dict[str, Any]:
    return {k: (v if not isinstance(v, (np.bool_,)) else bool(v)) for k, v in frame.iloc[0].items()}


def _catalog_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A catalog product row's owned fields in canonical form (frames.py's rules)."""
    return _first(local_frame(pd.DataFrame([dict(row)])))


def _stripe_values(product: Mapping[str, Any], default_key: str | None) -> dict[str, Any]:
    values = _first(stripe_frame([product]))
    values["default_price"] = default_key or ""
    return values


def _changed_fields(event: Mapping[str, Any]) -> set[str]:
    """The owned fields an event changed: for an update, those in `previous_attributes`
    (the object's other fields are only a snapshot, possibly older than the catalog)."""
    previous = event["data"].get("previous_attributes")
    if event["type"] not in ("product.updated", "price.updated") or previous is None:
        return set(OWNED_FIELDS) | set(PRICE_OWNED_FIELDS)
    changed = set(previous)
    for attribute, fields in PRICE_ATTRIBUTES.items():
        if attribute in previous:
            changed |= set(fields)
    return changed


def _catalog_value(name: str, canonical: Any) -> Any:
    """A canonical value back in the catalog's column form."""
    if name in ("metadata", "marketing_features", "images", "tiers", "transform_quantity", "custom_unit_amount", "currency_options", "package_dimensions"):
        return json.loads(canonical) if canonical else None
    if name == "shippable":
        return canonical == "true"
    if name == "unit_amount":
        return int(canonical) if canonical and "." not in canonical else None
    if name == "recurring_interval_count":
        return int(canonical) if canonical else None
    if name == "tax_behavior":
        return None if canonical == "unspecified" else canonical
    if name == "active":
        return bool(canonical)
    if name == "name":
        return canonical
    return canonical or None


def _price_columns(values: Mapping[str, Any], fields: Iterable[str]) -> dict[str, Any]:
    """Canonical price values as `prices` columns (an amount with a fraction goes to unit_amount_decimal)."""
    out = {f: _catalog_value(f, values[f]) for f in fields}
    if "unit_amount" in out:
        amount = values["unit_amount"]
        out["unit_amount_decimal"] = amount if amount and "." in amount else None
    return out


class InboxApplier:
    """Applies received events to the catalog under a conflict policy, auditing each decision.

    A policy that writes Stripe's values into the catalog (`stripe_wins`, `latest_wins`, or
    adopting prices) is refused at once for a catalog the pipeline only reads (the user's own
    table or query).
    """

    def __init__(
        self,
        catalog: Catalog,
        policy: ConflictPolicy = ConflictPolicy.LOCAL_WINS,
        gateway: StripeGateway | Mapping[str, StripeGateway] | None = None,
        price_orphan_policy: OrphanPolicy = OrphanPolicy.REPORT,
        api_version: str | None = None,
    ):
        self.catalog = catalog
        self.api_version = api_version  # RECON_STRIPE_API_VERSION: events at another are counted
        self.engine = catalog.engine
        self.policy = ConflictPolicy(policy)
        self.price_orphan_policy = OrphanPolicy(price_orphan_policy)
        if self.policy.writes_catalog:
            catalog.require_writable(f"RECON_CONFLICT_POLICY={self.policy.value} (use local_wins)")
        if self.price_orphan_policy is OrphanPolicy.ADOPT:
            catalog.require_own_tables("RECON_PRICE_ORPHAN_POLICY=adopt (use report)")
        # Each account's gateway (by name): an event's prices are fetched from the account it came from.
        self.gateways = by_name(gateway) if gateway is not None else {}
        self.gateway: StripeGateway | None = next(iter(self.gateways.values()), None)
        self.account = DEFAULT_ACCOUNT

    def _default_key(self, product: Mapping[str, Any]) -> str | None:
        """The lookup key of a product's default price (fetched: events carry only its id)."""
        price = product.get("default_price")
        if isinstance(price, dict) or price is None:
            return (price or {}).get("lookup_key")
        if self.gateway is None:
            return None  # without a client the default price is left to reconciliation
        return self.gateway.request("get", f"/v1/prices/{price}").get("lookup_key")

    def _full_price(self, price: Mapping[str, Any]) -> Mapping[str, Any]:
        """The price with `tiers` and `currency_options` (an event's object has neither)."""
        if self.gateway is None:
            return price
        return self.gateway.request("get", f"/v1/prices/{price['id']}", {"expand": ["tiers", "currency_options"]})

    def _audit(self, conn: Connection, event: Mapping[str, Any], product_id: str, field_name: str | None, before: Any, after: Any, decision: str, reason: str) -> None:
        audit_trail.record(conn, "stripe", product_id, field_name, before, after, decision, reason, event["id"])

    def _mark(self, conn: Connection, event_id: str, status: InboxStatus, note: str | None = None) -> None:
        conn.execute(update(inbox).where(inbox.c.event_id == event_id).values(status=status, applied_at=_now(), note=note))

    def apply_pending(self, limit: int = 1000) -> ApplyResult:
        result = ApplyResult()
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(inbox.c.event_id, inbox.c.payload, inbox.c.account)
                .where(inbox.c.status == InboxStatus.RECEIVED)
                .order_by(inbox.c.created, inbox.c.received_at)
                .limit(limit)
            ).all()
        for done, row in enumerate(pending):
            try:
                self.apply_event(row.payload, result, row.account)
                result.api_versions[str(row.payload.get("api_version"))] += 1
                result.version_mismatches += other_version(row.payload, self.api_version)
            except stripe.StripeError as exc:
                # Fetching the event's price failed after the client's retries (an outage):
                # this event and the ones after it stay received, in order, for the next pass.
                result.waiting = len(pending) - done
                result.stripe_error = error_text(exc)
                break
        return result

    def apply_event(self, event: Mapping[str, Any], result: ApplyResult, account: str = DEFAULT_ACCOUNT) -> None:
        """Apply one event from the Stripe `account`. With several accounts, an event about a
        product sold in another account (or in none configured) is ignored, with that reason."""
        self.account = account  # a product adopted from this event is sold there
        if self.gateways:  # the event's own account's gateway, or none (then it is ignored below)
            self.gateway = self.gateways.get(account)
            elsewhere = self._sold_elsewhere(event, account)
            if elsewhere:
                with self.engine.begin() as conn:
                    self._mark(conn, event["id"], InboxStatus.IGNORED, elsewhere)
                result.ignored += 1
                return
        obj = event["data"]["object"]
        key = (event.get("request") or {}).get("idempotency_key")
        is_price = event["type"] in PRICE_EVENTS
        with self.engine.connect() as conn:
            echo = bool(key and conn.execute(select(sync_ledger.c.id).where(sync_ledger.c.idempotency_key == key).limit(1)).first())
        # What Stripe holds beyond the event's object is fetched outside the transaction (a network call).
        fetched: Any = None
        if not echo and event["type"] in ("product.created", "product.updated"):
            fetched = self._default_key(obj)
        elif not echo and is_price and event["type"] != "price.deleted" and self._owned_or_adoptable(obj):
            fetched = self._full_price(obj)
        with self.engine.begin() as conn:
            if echo:
                self._mark(conn, event["id"], InboxStatus.ECHO, "our own write coming back")
                result.echoes += 1
                return
            if event["type"] not in EVENT_TYPES:
                self._mark(conn, event["id"], InboxStatus.IGNORED, f"{event['type']} is not a catalog event")
                result.ignored += 1
                return
            # Prices have no `updated`: their events are ordered by when they happened.
            seen_key = f"price:{obj['id']}" if is_price else obj["id"]
            seen = conn.execute(select(stripe_seen).where(stripe_seen.c.product_id == seen_key)).mappings().first()
            updated = int(event["created"] if is_price else obj.get("updated") or event["created"])
            if seen is not None and updated < seen["stripe_updated"]:
                self._mark(conn, event["id"], InboxStatus.STALE, f"older than {seen['event_id']} already applied")
                result.stale += 1
                return
            if is_price:
                if not self._price_event(conn, event, fetched or obj, updated, result):
                    self._mark(conn, event["id"], InboxStatus.IGNORED, "a price of a product the catalog does not have")
                    result.ignored += 1
                    return
            else:
                product_id = obj["id"]
                row = self.catalog.row(conn, product_id)
                if event["type"] == "product.deleted":
                    self._deleted(conn, event, product_id, row, result)
                elif row is None:
                    self._unknown(conn, event, obj, fetched, result)
                else:
                    self._conflicts(conn, event, product_id, row, _stripe_values(obj, fetched), updated, result)
            self._seen(conn, seen_key, updated, event["id"], seen is not None)
            self._mark(conn, event["id"], InboxStatus.APPLIED)
            result.applied += 1

    def _sold_elsewhere(self, event: Mapping[str, Any], account: str) -> str | None:
        """Why an event from `account` is not this catalog's to apply, if it is not: its product
        is sold in another account, or the account is not one RECON_STRIPE_ACCOUNTS names."""
        if account not in self.gateways:
            return f"from the Stripe account {account!r}, which RECON_STRIPE_ACCOUNTS does not name"
        obj = event["data"]["object"]
        product_id = catalog_id_from_stripe(str(obj.get("product"))) if event["type"] in PRICE_EVENTS else obj.get("id")
        sold_in = self.catalog.accounts_of([str(product_id)]).get(str(product_id))
        if sold_in is not None and sold_in != account:
            return f"from the Stripe account {account!r}, about product {product_id!r}, which is sold in {sold_in!r}"
        return None

    def _seen(self, conn: Connection, product_id: str, updated: int, event_id: str, exists: bool) -> None:
        values = {"stripe_updated": updated, "event_id": event_id}
        if exists:
            conn.execute(update(stripe_seen).where(stripe_seen.c.product_id == product_id).values(**values))
        else:
            conn.execute(insert(stripe_seen).values(product_id=product_id, **values))

    def _stripe_wins(self, updated: int, row: Mapping[str, Any]) -> tuple[bool, str]:
        if self.policy is ConflictPolicy.STRIPE_WINS:
            return True, "policy stripe_wins"
        if self.policy is ConflictPolicy.LOCAL_WINS:
            return False, "policy local_wins"
        local = row["updated_at"]
        local = local.replace(tzinfo=dt.UTC) if local.tzinfo is None else local
        stripe_time = dt.datetime.fromtimestamp(updated, dt.UTC)
        return stripe_time > local, f"policy latest_wins: Stripe {stripe_time:%H:%M:%S} vs catalog {local:%H:%M:%S}"

    def _decide(self, conn, event, product_id: str, row, local: Mapping[str, Any], stripe_values: Mapping[str, Any], fields, updated: int, result, take) -> None:
        """Each owned field Stripe changed that differs from the catalog: decided by the policy, audited."""
        changed = _changed_fields(event)
        differing = [f for f in fields if f in changed and f in stripe_values and stripe_values[f] != local[f]]
        if not differing:
            return
        result.conflicts += len(differing)
        stripe_wins, why = self._stripe_wins(updated, row)
        if stripe_wins:
            take(differing)
        else:
            # The catalog owns these fields: put its values back in Stripe, through the outbox.
            enqueue(conn, product_id, "revert", {"fields": differing, "event_id": event["id"]})
        decision = Decision.TOOK_STRIPE if stripe_wins else Decision.KEPT_LOCAL
        for f in differing:
            self._audit(conn, event, product_id, f, local[f], stripe_values[f], decision, f"{event['type']} changed an owned field; {why}")
            result.decisions.append(f"{product_id}.{f}: {decision}")

    def _conflicts(self, conn, event, product_id, row, stripe_values, updated, result) -> None:
        def take(differing: list[str]) -> None:
            take_from_stripe(self.catalog, conn, product_id, {f: _catalog_value(f, stripe_values[f]) for f in differing})

        fields = [f for f in OWNED_FIELDS if f != "default_price" or stripe_values.get("default_price")]
        self._decide(conn, event, product_id, row, _catalog_values(row), stripe_values, fields, updated, result, take)

    def _owned_or_adoptable(self, price: Mapping[str, Any]) -> bool:
        key = price.get("lookup_key")
        if self.price_orphan_policy is OrphanPolicy.ADOPT:
            return True
        if not key:
            return False
        with self.engine.connect() as conn:
            return conn.execute(select(prices.c.lookup_key).where(prices.c.lookup_key == key)).first() is not None

    def _price_event(self, conn, event, price: Mapping[str, Any], updated: int, result) -> bool:
        """A price event under the ownership map; False when its product is not the catalog's."""
        product_id = catalog_id_from_stripe(str(price.get("product")))
        key = price.get("lookup_key")
        owned = None
        if key:
            owned = self.catalog.price_rows([product_id]).set_index("lookup_key", drop=False)
            owned = owned.loc[key] if key in owned.index else None
        if owned is None:
            if self.catalog.row(conn, product_id) is None:
                return False
            self._unmanaged_price(conn, event, product_id, price, result)
            return True
        stripe_values = _first(stripe_price_frame([price]))
        if event["type"] == "price.deleted":
            stripe_values["active"] = False
        local = _first(local_price_frame(pd.DataFrame([owned.to_dict()])))

        def take(differing: list[str]) -> None:
            take_price_from_stripe(self.catalog, conn, str(key), _price_columns(stripe_values, differing))

        fields = [f for f in PRICE_OWNED_FIELDS if f not in ("tiers", "currency_options") or price.get(f) is not None]
        self._decide(conn, event, product_id, owned, local, stripe_values, fields, updated, result, take)
        return True

    def _unmanaged_price(self, conn, event, product_id: str, price: Mapping[str, Any], result) -> None:
        adopt = self.price_orphan_policy is OrphanPolicy.ADOPT and bool(price.get("lookup_key")) and event["type"] == "price.created"
        if adopt:
            adopt_prices(self.catalog, [price_from_row(pd.Series(_first(stripe_price_frame([price]))))], conn)
        decision = Decision.ADOPTED if adopt else Decision.PRICE_UNMANAGED
        why = f"policy RECON_PRICE_ORPHAN_POLICY={self.price_orphan_policy.value}"
        self._audit(conn, event, product_id, "price", None, price.get("lookup_key") or price["id"], decision, f"{event['type']} for a price whose lookup key the catalog does not own; {why}")
        result.decisions.append(f"{product_id}.{price['id']}: {decision}")

    def _unknown(self, conn, event, obj, default_key, result) -> None:
        product_id = obj["id"]
        adopt = self.policy.writes_catalog and self.catalog.source.is_own_schema  # the user's own tables take no inserts from us
        if adopt:
            values = _stripe_values(obj, None)
            adopted = dataclasses.replace(desired_from_row(pd.Series(values)).as_catalog_product(product_id), account=self.account)
            adopt_from_stripe(self.catalog, [adopted], conn)
        decision = Decision.ADOPTED if adopt else Decision.ORPHAN_REPORTED
        self._audit(conn, event, product_id, None, None, obj.get("name"), decision, f"{event['type']} for a product the catalog does not have; policy {self.policy.value}")
        result.decisions.append(f"{product_id}: {decision}")

    def _deleted(self, conn, event, product_id, row, result) -> None:
        if row is None:
            return
        if self.policy.writes_catalog:
            take_from_stripe(self.catalog, conn, product_id, {"active": False})
            decision = Decision.TOOK_STRIPE
        else:
            enqueue(conn, product_id, "revert", {"deleted_in_stripe": True, "event_id": event["id"]})
            decision = Decision.KEPT_LOCAL
        self._audit(conn, event, product_id, "active", bool(row["active"]), False, decision, f"deleted in Stripe; policy {self.policy.value}")
        result.conflicts += 1
        result.decisions.append(f"{product_id}: {decision}")


def inbox_lag(engine: Engine) -> tuple[int, float]:
    """Events waiting to be applied, and the age in seconds of the oldest one."""
    with engine.connect() as conn:
        waiting, oldest = conn.execute(select(func.count(), func.min(inbox.c.received_at)).where(inbox.c.status == InboxStatus.RECEIVED)).one()
    if not waiting:
        return 0, 0.0
    oldest = oldest.replace(tzinfo=dt.UTC) if oldest.tzinfo is None else oldest
    return int(waiting), (_now() - oldest).total_seconds()
