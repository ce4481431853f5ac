"""The events poller: `/v1/events` from a durable cursor into the inbox.

The safety net for missed webhooks (Stripe keeps events for 30 days). From a cursor it
walks *newer* events with `ending_before`, page after page; without one (or when the
cursor's event has expired) it starts from a `created` time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import stripe
from sqlalchemy import Engine

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
