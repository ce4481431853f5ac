"""The naive baseline: push a catalog change to Stripe once, in the request that made it.

No retry, no record, no queue: what a hand-written webhook handler does. It is kept only
so the outage drill can count what it loses; the pipeline never uses it.
"""

from __future__ import annotations

import httpx


def naive_push(client: httpx.Client, product_id: str, name: str) -> bool:
    """One POST; any 429, 5xx, timeout or outage and the change is simply gone."""
    try:
        response = client.post(f"/v1/products/{product_id}", data={"name": name}, timeout=5)
        return response.status_code < 300
    except httpx.HTTPError:
        return False
