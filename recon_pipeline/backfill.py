"""Hour windows: what changed on each side in [start, end), for hourly partitions and backfills.

Hours are UTC (no daylight saving: every day has 24 of them). A row belongs to the hour of
its timestamp, start inclusive and end exclusive: 12:59:59.999 is in 12:00, 13:00:00 in 13:00.
Stripe keeps events for 30 days; an hour older than that cannot be rebuilt from events,
so it falls back to a full reconciliation.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from recon_pipeline.catalog import Catalog
from recon_pipeline.policies import ConflictPolicy
from recon_pipeline.settings import PARTITION_FORMAT
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.inbox import EVENT_TYPES, ApplyResult, EventSource, InboxApplier, store_event

EVENT_RETENTION = dt.timedelta(days=30)
CHANGE_COLUMNS = ["product_id", "updated_at", "hour"]
EVENT_COLUMNS = ["event_id", "type", "created", "product_id", "hour"]


def hour_key(moment: dt.datetime) -> str:
    """The hourly partition key of a moment (UTC)."""
    moment = moment.replace(tzinfo=dt.UTC) if moment.tzinfo is None else moment.astimezone(dt.UTC)
    return moment.replace(minute=0, second=0, microsecond=0).strftime(PARTITION_FORMAT)


def beyond_retention(start: dt.datetime, now: dt.datetime | None = None) -> bool:
    now = now or dt.datetime.now(dt.UTC)
    return start < now - EVENT_RETENTION


def catalog_changes(catalog: Catalog, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """Catalog products last changed in [start, end), with the hour each belongs to."""
    rows = catalog.rows()
    frame = pd.DataFrame({"product_id": rows["id"].astype(str), "updated_at": pd.to_datetime(rows["updated_at"], utc=True)})
    frame = frame[(frame["updated_at"] >= pd.Timestamp(start)) & (frame["updated_at"] < pd.Timestamp(end))]
    frame = frame.sort_values("updated_at", kind="stable").reset_index(drop=True)
    frame["hour"] = [hour_key(t.to_pydatetime()) for t in frame["updated_at"]]
    return frame[CHANGE_COLUMNS]


def event_product_id(event: dict[str, Any]) -> str | None:
    obj = event["data"]["object"]
    if obj.get("object") == "product":
        return obj.get("id")
    product = obj.get("product")
    return product if isinstance(product, str) else (product or {}).get("id")


def stripe_events(gateway: StripeGateway, start: dt.datetime, end: dt.datetime) -> list[dict[str, Any]]:
    """Product and price events created in [start, end) (seconds: Stripe's resolution)."""
    params = {"created": {"gte": int(start.timestamp()), "lt": int(end.timestamp())}, "types": EVENT_TYPES}
    return list(gateway.list_all("/v1/events", params))


@dataclass
class RecoveredEvents:
    frame: pd.DataFrame  # EVENT_COLUMNS, one row per event
    new_in_inbox: int
    applied: ApplyResult


def recover_events(
    catalog: Catalog,
    gateway: StripeGateway,
    start: dt.datetime,
    end: dt.datetime,
    policy: ConflictPolicy,
    gateways: Mapping[str, StripeGateway] | None = None,
) -> RecoveredEvents:
    """The hour's events of the gateway's account, put in the inbox (duplicates are no-ops) and
    applied: what a backfill recovers of the webhooks missed during an outage. Past the
    retention there are none. `gateways`: every account's, so that what else waits in the
    inbox is applied in its own account."""
    events = [] if beyond_retention(start) else stripe_events(gateway, start, end)
    stored = sum(store_event(catalog.engine, event, EventSource.BACKFILL, gateway.account) for event in events)
    applied = InboxApplier(catalog, policy, gateways or gateway, api_version=gateway.api_version).apply_pending()
    return RecoveredEvents(events_frame(events), stored, applied)


def events_frame(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    rows = [
        (e["id"], e["type"], e["created"], event_product_id(e), hour_key(dt.datetime.fromtimestamp(e["created"], dt.UTC)))
        for e in events
    ]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def touched_products(changes: pd.DataFrame, events: pd.DataFrame) -> dict[str, list[str]]:
    """product_id -> the hours in which either side touched it."""
    touched: dict[str, set[str]] = {}
    for frame in (changes, events):
        for product_id, hour in zip(frame["product_id"], frame["hour"], strict=True):
            if product_id:
                touched.setdefault(product_id, set()).add(hour)
    return {p: sorted(h) for p, h in touched.items()}
