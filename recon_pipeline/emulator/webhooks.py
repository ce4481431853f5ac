"""Webhook endpoints and signed event delivery, as Stripe does it.

Each event is POSTed to every enabled endpoint whose `enabled_events` match, signed with
the endpoint's secret (`Stripe-Signature: t=<timestamp>,v1=<HMAC-SHA256 of "t.payload">`),
and retried with exponential backoff while the endpoint fails (Stripe retries for days;
the emulator's schedule is compressed: `RETRY_BASE_S` doubling, `MAX_ATTEMPTS` tries).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from recon_pipeline.emulator import errors
from recon_pipeline.emulator.resources import check_known, new_id, now
from recon_pipeline.emulator.state import EmulatorState

log = logging.getLogger(__name__)
RETRY_BASE_S = 0.5
MAX_ATTEMPTS = 8


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def create_endpoint(state: EmulatorState, params: dict[str, Any]) -> dict[str, Any]:
    check_known(params, {"url", "enabled_events", "description", "metadata", "api_version"})
    url = params.get("url")
    if not url:
        raise errors.missing("url")
    events = params.get("enabled_events")
    if not events:
        raise errors.missing("enabled_events")
    endpoint = {
        "id": new_id("we"),
        "object": "webhook_endpoint",
        "api_version": params.get("api_version"),
        "application": None,
        "created": now(),
        "description": params.get("description"),
        "enabled_events": events if isinstance(events, list) else [events],
        "livemode": False,
        "metadata": params.get("metadata") or {},
        "secret": "whsec_" + new_id("x")[2:],
        "status": "enabled",
        "url": url,
    }
    return state.put("webhook_endpoint", endpoint)


def _wants(endpoint: dict[str, Any], event_type: str) -> bool:
    return endpoint["status"] == "enabled" and any(e == "*" or e == event_type for e in endpoint["enabled_events"])


class Deliverer:
    """Delivers events from the server's event loop, each endpoint in its own task."""

    def __init__(self, state: EmulatorState):
        self.state = state
        self.delivered = 0
        self.failed_attempts = 0
        self._client: httpx.AsyncClient | None = None
        self._deliveries: set[asyncio.Task] = set()

    def schedule(self, event: dict[str, Any]) -> None:
        endpoints = [e for e in self.state.all("webhook_endpoint") if _wants(e, event["type"])]
        if not endpoints:
            return
        loop = asyncio.get_running_loop()
        payload = json.dumps(event)
        for endpoint in endpoints:
            # The loop keeps only a weak reference to a task: hold it until it is done.
            task = loop.create_task(self._deliver(endpoint, payload))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, endpoint: dict[str, Any], payload: str) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=10)
        for attempt in range(MAX_ATTEMPTS):
            try:
                response = await self._client.post(
                    endpoint["url"],
                    content=payload,
                    headers={"Content-Type": "application/json", "Stripe-Signature": sign(payload, endpoint["secret"])},
                )
                if response.status_code < 300:
                    self.delivered += 1
                    return
            except httpx.HTTPError:
                pass
            self.failed_attempts += 1
            await asyncio.sleep(RETRY_BASE_S * 2**attempt)
        log.warning("gave up delivering an event to %s after %d attempts", endpoint["url"], MAX_ATTEMPTS)
