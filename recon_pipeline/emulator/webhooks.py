"""Webhook endpoints and signed event delivery, as Stripe does it.

An endpoint is created, retrieved, updated (`url`, `enabled_events`, `disabled`,
`description`, `metadata`), listed and deleted; its signing `secret` is shown once, in the
answer that creates it.

Each event is POSTed to every enabled endpoint whose `enabled_events` match, signed with
the endpoint's secret (`Stripe-Signature: t=<timestamp>,v1=<HMAC-SHA256 of "t.payload">`),
and retried with exponential backoff while the endpoint fails (Stripe retries for days;
the emulator's schedule is compressed: `RETRY_BASE_S` doubling, `MAX_ATTEMPTS` tries).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import hmac
import json
import logging
import time
from typing import Any

import httpx

from recon_pipeline.emulator import errors
from recon_pipeline.emulator.resources import Account, apply_metadata, new_id
from recon_pipeline.emulator.spec import check_version
from recon_pipeline.emulator.state import EmulatorState, Page

log = logging.getLogger(__name__)
RETRY_BASE_S = 0.5
MAX_ATTEMPTS = 8


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    timestamp = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class Endpoints:
    """`/v1/webhook_endpoints`: the `secret` is in the answer that creates an endpoint only."""

    def __init__(self, account: Account):
        self.account = account
        self.state = account.state

    def create(self, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = {
            "id": new_id("we"),
            "object": "webhook_endpoint",
            # Without a version of its own, an endpoint follows the account's default (null, as Stripe shows it).
            "api_version": check_version(params["api_version"], "api_version") if "api_version" in params else None,
            "application": None,
            "created": self.account.now(),
            "description": params.get("description") or None,
            "enabled_events": params["enabled_events"],
            "livemode": False,
            "metadata": apply_metadata({}, params.get("metadata", {})),
            "secret": "whsec_" + new_id("x")[2:],
            "status": "enabled",
            "url": params["url"],
        }
        self.state.put("webhook_endpoint", endpoint)
        return endpoint

    def get(self, endpoint_id: str) -> dict[str, Any]:
        endpoint = self.state.get("webhook_endpoint", endpoint_id)
        if endpoint is None:
            raise errors.no_such("webhook_endpoint", endpoint_id, "webhook_endpoint")
        return endpoint

    def update(self, endpoint_id: str, params: dict[str, Any]) -> dict[str, Any]:
        endpoint = copy.deepcopy(self.get(endpoint_id))
        for name in ("url", "enabled_events"):
            if name in params:
                endpoint[name] = params[name]
        if "description" in params:
            endpoint["description"] = params["description"] or None
        if "metadata" in params:
            endpoint["metadata"] = apply_metadata(endpoint["metadata"], params["metadata"])
        if "disabled" in params:
            endpoint["status"] = "disabled" if params["disabled"] else "enabled"
        self.state.put("webhook_endpoint", endpoint)
        return endpoint

    def list(self, params: dict[str, Any]) -> Page:
        self.account.check_cursor("webhook_endpoint", params)
        return self.state.list("webhook_endpoint", params.get("limit", 10), None, params.get("starting_after"), params.get("ending_before"))

    def delete(self, endpoint_id: str) -> dict[str, Any]:
        self.get(endpoint_id)
        self.state.delete("webhook_endpoint", endpoint_id)
        return {"id": endpoint_id, "object": "webhook_endpoint", "deleted": True}


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
        for endpoint in endpoints:
            # Rendered at the endpoint's API version, or the account's default when the event happened.
            payload = json.dumps({**event, "api_version": endpoint["api_version"] or event["api_version"]})
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
