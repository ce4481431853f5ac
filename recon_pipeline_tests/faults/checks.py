"""What every fault test ends with: drift zero, nothing lost, no duplicate object in Stripe."""

from __future__ import annotations

from collections import Counter

import stripe

from recon_pipeline.repair import full_drift
from recon_pipeline.stripe_api import StripeGateway


def stripe_objects(url: str, kind: str) -> list[dict]:
    client = stripe.StripeClient("sk_test_verify", base_addresses={"api": url}, max_network_retries=0)
    service = client.v1.products if kind == "products" else client.v1.prices
    return [obj.to_dict() for obj in service.list(params={"limit": 100}).auto_paging_iter()]


def assert_no_duplicates(url: str) -> None:
    """One product per id, no two prices alike for one product, at most one active price each."""
    products = stripe_objects(url, "products")
    assert len({p["id"] for p in products}) == len(products)
    prices = stripe_objects(url, "prices")
    same = Counter((p["product"], p["unit_amount"], p["currency"], (p.get("recurring") or {}).get("interval")) for p in prices)
    assert [k for k, n in same.items() if n > 1] == [], "the same price was created twice"
    active = Counter(p["product"] for p in prices if p["active"])
    assert [k for k, n in active.items() if n > 1] == [], "a product has more than one active price"


def drift_rows(engine, url: str) -> int:
    """Rows of drift between the whole catalog and the whole Stripe account, by a full reconciliation."""
    return len(full_drift(engine, StripeGateway("sk_test_verify", url, global_rate=None, endpoint_rate=None)))
