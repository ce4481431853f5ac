"""The concurrent products snapshot: every product exactly once, whatever the created layout."""

from __future__ import annotations

import time

import httpx
import pytest

from recon_pipeline.stripe_api import StripeGateway, fetch_products_snapshot


def load(emulator, products: list[dict]) -> set[str]:
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": products}, timeout=60).raise_for_status()
    return {p["id"] for p in products}


def product(i: int, created: int, price: bool = True) -> dict:
    return {
        "id": f"p_{i:05d}",
        "name": f"P {i}",
        "created": created,
        "price": {"unit_amount": 100 + i, "currency": "usd", "recurring_interval": None, "lookup_key": None} if price else None,
    }


def snapshot(emulator, concurrency: int = 8):
    client = StripeGateway(api_key="sk_test_snap", api_base=emulator.url, global_rate=None, endpoint_rate=None)
    return fetch_products_snapshot(client, concurrency=concurrency)


LAYOUTS = {
    # 300 products in one second, then months of gaps with a few products each.
    "one_busy_second_and_gaps": lambda now: [product(i, now - 40 * 86400) for i in range(300)]
    + [product(300 + i, now - 86400 * (60 * (i % 5) + 1) - i) for i in range(40)],
    "spread_over_two_years": lambda now: [product(i, now - (i * 7919) % (2 * 365 * 86400)) for i in range(1200)],
    "all_in_one_second": lambda now: [product(i, now - 5) for i in range(260)],
    "fewer_than_a_page": lambda now: [product(i, now - i) for i in range(42)],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_snapshot_lists_every_product_exactly_once(emulator, layout):
    ids = load(emulator, LAYOUTS[layout](int(time.time())))
    snap = snapshot(emulator)
    got = [p["id"] for p in snap.products]
    assert len(got) == len(set(got)) == len(ids) and set(got) == ids
    assert snap.complete and snap.duplicates == 0
    priced = [p for p in snap.products if p["default_price"]]
    assert priced and all(isinstance(p["default_price"], dict) and p["default_price"]["product"] == p["id"] for p in priced)


def test_snapshot_of_an_empty_account_is_complete(emulator):
    snap = snapshot(emulator)
    assert snap.products == [] and snap.complete and snap.pages == 1


def test_snapshot_keeps_within_the_endpoint_limit(emulator):
    now = int(time.time())
    load(emulator, [product(i, now - i * 600) for i in range(2000)])
    emulator.faults.update({"endpoint_rate_limit": 25})
    client = StripeGateway(api_key="sk_test_snap", api_base=emulator.url, global_rate=None, endpoint_rate=25)
    snap = fetch_products_snapshot(client, concurrency=8)
    assert len(snap.products) == 2000 and snap.complete
    # Client and server buckets agree; at most a stray 429 from request timing, retried.
    assert client.stats["rate_limited"] <= 2
