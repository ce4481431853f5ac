"""The events poller: `/v1/events` from a durable cursor into the inbox.

The safety net for missed webhooks (Stripe keeps events for 30 days). From a cursor it
walks *newer* events with `ending_before`, page after page; without one (or when the
cursor's event has expired) it starts from a `created` time.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import Engine, insert, select, update

from recon_pipeline.catalog.schema import events_cursor
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.inbox import EVENT_TYPES, EventSource, other_version, store_event

FIRST_LOOKBACK_S = 24 * 3600


@dataclass
class PollResult:
    cursor: dict[str, Any]
    seen: int
    stored: int
    version_mismatches: int = 0  # events rendered at another API version than the client's (RECON_STRIPE_API_VERSION)


def _newer_than(gateway: StripeGateway, last_id: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    cursor = last_id
    while True:
        page = gateway.request("get", "/v1/events", {"limit": 100, "ending_before": cursor, "types": EVENT_TYPES})
        events = page["data"] + events  # each page is newest first, and newer than the last
        if not page["has_more"] or not page["data"]:
            return events
        cursor = page["data"][0]["id"]


def _since(gateway: StripeGateway, created_gte: int) -> list[dict[str, Any]]:
    return list(gateway.list_all("/v1/events", {"created": {"gte": created_gte}, "types": EVENT_TYPES}))


def poll_events(engine: Engine, gateway: StripeGateway, cursor: dict[str, Any] | None) -> PollResult:
    """Store every event of the gateway's account newer than the cursor (the account's own); returns the new cursor."""
    cursor = dict(cursor or {})
    events: list[dict[str, Any]]
    if cursor.get("last_id"):
        try:
            events = _newer_than(gateway, cursor["last_id"])
        except stripe.InvalidRequestError as error:
            if error.code != "resource_missing":
                raise
            events = _since(gateway, int(cursor.get("created", time.time() - FIRST_LOOKBACK_S)))
    else:
        events = _since(gateway, int(cursor.get("created", time.time() - FIRST_LOOKBACK_S)))
    stored = sum(store_event(engine, event, EventSource.POLLER, gateway.account) for event in events)
    if events:  # both walks return newest first
        cursor = {"last_id": events[0]["id"], "created": events[0]["created"]}
    mismatches = sum(other_version(event, gateway.api_version) for event in events)
    return PollResult(cursor=cursor, seen=len(events), stored=stored, version_mismatches=mismatches)


def stored_cursor(engine: Engine, account: str) -> dict[str, Any] | None:
    """The account's durable cursor (None before its first poll)."""
    with engine.connect() as conn:
        row = conn.execute(select(events_cursor.c.last_id, events_cursor.c.created).where(events_cursor.c.account == account)).first()
    if row is None:
        return None
    return {key: value for key, value in (("last_id", row.last_id), ("created", row.created)) if value is not None}


def last_polled(engine: Engine) -> dict[str, dt.datetime]:
    """When each account's events were last listed to the end (accounts never polled are absent)."""
    with engine.connect() as conn:
        rows = conn.execute(select(events_cursor.c.account, events_cursor.c.polled_at)).all()
    return {row.account: row.polled_at if row.polled_at.tzinfo else row.polled_at.replace(tzinfo=dt.UTC) for row in rows}


def poll_account(engine: Engine, gateway: StripeGateway) -> PollResult:
    """Polls the gateway's account from its durable cursor, then moves the cursor (only once the
    events are stored: a poll cut short leaves it where it was, and the next one repeats safely)."""
    polled = poll_events(engine, gateway, stored_cursor(engine, gateway.account))
    row = {"last_id": polled.cursor.get("last_id"), "created": polled.cursor.get("created"), "polled_at": dt.datetime.now(dt.UTC)}
    with engine.begin() as conn:  # one poll per account at a time (the poller's run, guarded by its sensor)
        if not conn.execute(update(events_cursor).where(events_cursor.c.account == gateway.account).values(**row)).rowcount:
            conn.execute(insert(events_cursor).values(account=gateway.account, **row))
    return polled
