"""The inbox: Stripe events into the catalog, with ownership, conflict policy and an audit trail.

Events arrive from two places, the webhook receiver and the events poller, into one
`inbox` table unique by event id (a duplicate or a replay is a no-op). `apply_inbox`
takes them in order of `created` and, for each:

1. recognises our own writes coming back (the event's idempotency key is in
   `sync_ledger`): an *echo*, not applied, so nothing bounces back and forth;
2. refuses anything older than what the catalog has already seen of that product
   (`stripe_seen`, by the object's `updated`): an older event never overwrites newer state;
3. compares the fields the catalog owns (OWNED_FIELDS) that the event changed (for an
   update, `previous_attributes`) with the catalog's values; each difference is a
   conflict decided by the policy:
   - `local_wins` (default): the catalog keeps its value, and an outbox row puts it back
     in Stripe;
   - `stripe_wins`: the catalog takes Stripe's value (no outbox row: it must not bounce);
   - `latest_wins`: whichever changed last, the Stripe object's `updated` or the catalog
     row's `updated_at`;
4. writes every decision to `audit`: who, what, before, after, why.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import stripe
from sqlalchemy import Connection, Engine, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from recon_pipeline.catalog import Catalog, CatalogProduct
from recon_pipeline.catalog.changes import adopt_from_stripe, enqueue, take_from_stripe
from recon_pipeline.catalog.schema import InboxStatus, inbox, stripe_seen, sync_ledger
from recon_pipeline.policies import ConflictPolicy
from recon_pipeline.reconcile.frames import canonical_metadata, canonical_text
from recon_pipeline.stripe_api import StripeGateway, error_text
from recon_pipeline.sync import audit as audit_trail

OWNED_FIELDS = ("name", "description", "active", "metadata", "unit_amount", "currency", "recurring_interval")
PRODUCT_EVENTS = ("product.created", "product.updated", "product.deleted")
# Every event type the catalog listens to (webhook endpoints, the poller, backfills).
EVENT_TYPES = [*PRODUCT_EVENTS, "price.created", "price.updated", "price.deleted"]


class EventSource(StrEnum):
    """Where an event entered the inbox (inbox.source)."""

    WEBHOOK = "webhook"
    POLLER = "poller"
    BACKFILL = "backfill"


class Decision(StrEnum):
    """What the inbox decided for one field or product (audit.decision)."""

    KEPT_LOCAL = "conflict_local_wins"  # the catalog keeps its value; an outbox row puts it back in Stripe
    TOOK_STRIPE = "conflict_stripe_wins"  # the catalog takes Stripe's value
    ADOPTED = "adopted"  # a product only Stripe had, now in the catalog
    ORPHAN_REPORTED = "orphan_reported"  # a product only Stripe has, left alone


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


def store_event(engine: Engine, event: Mapping[str, Any], source: EventSource) -> bool:
    """Put an event in the inbox; False when it was already there (a duplicate or replay)."""
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
    """Events the catalog does not act on (prices reach it through their product)."""
    conflicts: int = 0
    """Owned fields Stripe changed, decided by the conflict policy."""
    decisions: list[str] = field(default_factory=list)
    waiting: int = 0
    """Events left for the next pass because Stripe could not be reached."""
    stripe_error: str | None = None


def _catalog_values(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "name": canonical_text(row["name"]),
        "description": canonical_text(row["description"]),
        "active": bool(row["active"]),
        "metadata": canonical_metadata(row["metadata"]),
        "unit_amount": row["unit_amount"],
        "currency": canonical_text(row["currency"]).lower(),
        "recurring_interval": canonical_text(row["recurring_interval"]),
    }


def _stripe_values(product: Mapping[str, Any], price: Mapping[str, Any] | None) -> dict[str, Any]:
    values = {
        "name": canonical_text(product.get("name")),
        "description": canonical_text(product.get("description")),
        "active": bool(product.get("active")),
        "metadata": canonical_metadata(product.get("metadata")),
    }
    if price is not None:
        values.update(
            {
                "unit_amount": price.get("unit_amount"),
                "currency": canonical_text(price.get("currency")).lower(),
                "recurring_interval": canonical_text((price.get("recurring") or {}).get("interval")),
            }
        )
    return values


def _changed_fields(event: Mapping[str, Any]) -> set[str]:
    """The owned fields an event changed: for an update, those in `previous_attributes`
    (the object's other fields are only a snapshot, possibly older than the catalog)."""
    previous = event["data"].get("previous_attributes")
    if event["type"] != "product.updated" or previous is None:
        return set(OWNED_FIELDS)
    changed = {f for f in previous if f in OWNED_FIELDS}
    if "default_price" in previous:
        changed |= {"unit_amount", "currency", "recurring_interval"}
    return changed


def _catalog_value(name: str, canonical: Any) -> Any:
    """A canonical value back in the catalog's column form."""
    if name == "metadata":
        return json.loads(canonical)
    if name in ("description", "recurring_interval", "currency"):
        return canonical or None
    return canonical


class InboxApplier:
    """Applies received events to the catalog under a conflict policy, auditing each decision.

    A policy that writes Stripe's values into the catalog (`stripe_wins`, `latest_wins`) is
    refused at once for a catalog the pipeline only reads (the user's own table or query).
    """

    def __init__(self, catalog: Catalog, policy: ConflictPolicy = ConflictPolicy.LOCAL_WINS, gateway: StripeGateway | None = None):
        self.catalog = catalog
        self.engine = catalog.engine
        self.policy = ConflictPolicy(policy)
        if self.policy.writes_catalog:
            catalog.require_writable(f"RECON_CONFLICT_POLICY={self.policy.value} (use local_wins)")
        self.gateway = gateway

    def _default_price(self, product: Mapping[str, Any]) -> Mapping[str, Any] | None:
        price = product.get("default_price")
        if isinstance(price, dict) or price is None:
            return price
        if self.gateway is None:
            return None  # without a client the price fields are left to reconciliation
        return self.gateway.request("get", f"/v1/prices/{price}")

    def _audit(self, conn: Connection, event: Mapping[str, Any], product_id: str, field_name: str | None, before: Any, after: Any, decision: str, reason: str) -> None:
        audit_trail.record(conn, "stripe", product_id, field_name, before, after, decision, reason, event["id"])

    def _mark(self, conn: Connection, event_id: str, status: InboxStatus, note: str | None = None) -> None:
        conn.execute(update(inbox).where(inbox.c.event_id == event_id).values(status=status, applied_at=_now(), note=note))

    def apply_pending(self, limit: int = 1000) -> ApplyResult:
        result = ApplyResult()
        with self.engine.connect() as conn:
            pending = conn.execute(
                select(inbox.c.event_id, inbox.c.payload).where(inbox.c.status == InboxStatus.RECEIVED).order_by(inbox.c.created, inbox.c.received_at).limit(limit)
            ).all()
        for done, row in enumerate(pending):
            try:
                self.apply_event(row.payload, result)
            except stripe.StripeError as exc:
                # Fetching the event's price failed after the client's retries (an outage):
                # this event and the ones after it stay received, in order, for the next pass.
                result.waiting = len(pending) - done
                result.stripe_error = error_text(exc)
                break
        return result

    def apply_event(self, event: Mapping[str, Any], result: ApplyResult) -> None:
        obj = event["data"]["object"]
        key = (event.get("request") or {}).get("idempotency_key")
        # The price of a product event is fetched outside the transaction (a network call).
        price = None
        if event["type"] in ("product.created", "product.updated"):
            price = self._default_price(obj)
        with self.engine.begin() as conn:
            if key and conn.execute(select(sync_ledger.c.id).where(sync_ledger.c.idempotency_key == key).limit(1)).first():
                self._mark(conn, event["id"], InboxStatus.ECHO, "our own write coming back")
                result.echoes += 1
                return
            if event["type"] not in PRODUCT_EVENTS:
                self._mark(conn, event["id"], InboxStatus.IGNORED, "prices reach the catalog through their product's default_price")
                result.ignored += 1
                return
            product_id = obj["id"]
            seen = conn.execute(select(stripe_seen).where(stripe_seen.c.product_id == product_id)).mappings().first()
            updated = int(obj.get("updated") or event["created"])
            if seen is not None and updated < seen["stripe_updated"]:
                self._mark(conn, event["id"], InboxStatus.STALE, f"older than {seen['event_id']} already applied")
                result.stale += 1
                return
            row = self.catalog.row(conn, product_id)
            if event["type"] == "product.deleted":
                self._deleted(conn, event, product_id, row, result)
            elif row is None:
                self._unknown(conn, event, obj, price, result)
            else:
                self._conflicts(conn, event, product_id, row, _stripe_values(obj, price), updated, result)
            self._seen(conn, product_id, updated, event["id"], seen is not None)
            self._mark(conn, event["id"], InboxStatus.APPLIED)
            result.applied += 1

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

    def _conflicts(self, conn, event, product_id, row, stripe_values, updated, result) -> None:
        local = _catalog_values(row)
        changed = _changed_fields(event)
        differing = [f for f in OWNED_FIELDS if f in stripe_values and f in changed and stripe_values[f] != local[f]]
        if not differing:
            return
        result.conflicts += len(differing)
        stripe_wins, why = self._stripe_wins(updated, row)
        if stripe_wins:
            take_from_stripe(self.catalog, conn, product_id, {f: _catalog_value(f, stripe_values[f]) for f in differing})
        else:
            # The catalog owns these fields: put its values back in Stripe, through the outbox.
            enqueue(conn, product_id, "revert", {"fields": differing, "event_id": event["id"]})
        decision = Decision.TOOK_STRIPE if stripe_wins else Decision.KEPT_LOCAL
        for f in differing:
            self._audit(conn, event, product_id, f, local[f], stripe_values[f], decision, f"{event['type']} changed an owned field; {why}")
            result.decisions.append(f"{product_id}.{f}: {decision}")

    def _unknown(self, conn, event, obj, price, result) -> None:
        product_id = obj["id"]
        adopt = self.policy.writes_catalog
        if adopt:
            values = {f: _catalog_value(f, v) for f, v in _stripe_values(obj, price).items()}
            adopt_from_stripe(self.catalog, [CatalogProduct(id=product_id, **values)], conn)
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
