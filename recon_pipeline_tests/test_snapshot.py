"""The concurrent snapshots: every product and every price (active and archived) exactly once, whatever the created layout."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from recon_pipeline.reconcile.snapshot import CONCURRENCY, fetch_prices_snapshot, fetch_products_snapshot
from recon_pipeline.stripe_api import StripeGateway


def load(emulator, products: list[dict]) -> set[str]:
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": products}, timeout=60).raise_for_status()
    return {p["id"] for p in products}


def product(i: int, created: int, prices: int = 1) -> dict:
    return {
        "id": f"p_{i:05d}",
        "name": f"P {i}",
        "created": created,
        "prices": [{"currency": "usd", "unit_amount": 100 + i + n, "lookup_key": f"p_{i:05d}_{n}", "active": n != 2, "created": created} for n in range(prices)],
    }


def gateway(emulator, endpoint_rate: float | None = None) -> StripeGateway:
    return StripeGateway(api_key="sk_test_snap", api_base=emulator.url, global_rate=None, endpoint_rate=endpoint_rate)


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
    snap = fetch_products_snapshot(gateway(emulator))
    got = snap.frame["product_id"].tolist()
    assert len(got) == len(set(got)) == len(ids) and set(got) == ids
    assert snap.complete and snap.duplicates == 0
    assert snap.frame["default_price"].str.startswith("price_").all()  # each product's default price, by id


def test_the_prices_snapshot_lists_active_and_archived_prices_with_their_tiers_and_options(emulator):
    now = int(time.time())
    products = [product(i, now - i * 3600, prices=3) for i in range(150)]  # the third price of each is archived
    tiered = {
        "id": "seats",
        "name": "Seats",
        "created": now,
        "prices": [
            {"currency": "usd", "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": [{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400}],
             "lookup_key": "seats", "created": now},
            {"currency": "usd", "unit_amount": 900, "currency_options": {"eur": {"unit_amount": 800}}, "lookup_key": "seats_flat", "created": now},
        ],
    }
    load(emulator, [*products, tiered])
    snap = fetch_prices_snapshot(gateway(emulator))
    frame = snap.frame.set_index("lookup_key")
    assert len(frame) == 452 and frame.index.is_unique and snap.complete and snap.duplicates == 0
    assert (~frame["active"]).sum() == 150
    assert frame.loc["seats", "tiers"] == '[{"flat_amount":"","unit_amount":"500","up_to":"10"},{"flat_amount":"","unit_amount":"400","up_to":"inf"}]'
    assert frame.loc["seats_flat", "currency_options"] == '{"eur":{"tax_behavior":"unspecified","unit_amount":"800"}}'


def test_snapshot_of_an_empty_account_is_complete(emulator):
    snap = fetch_products_snapshot(gateway(emulator))
    assert snap.frame.empty and snap.complete and snap.pages == 1
    prices = fetch_prices_snapshot(gateway(emulator))
    assert prices.frame.empty and prices.complete and prices.pages == 2  # active and archived, one page each


def test_snapshot_keeps_within_the_endpoint_limit(emulator):
    now = int(time.time())
    load(emulator, [product(i, now - i * 600) for i in range(2000)])
    emulator.faults.update({"endpoint_rate_limit": 25})
    client = gateway(emulator, endpoint_rate=25)
    snap = fetch_products_snapshot(client, concurrency=8)
    assert len(snap.frame) == 2000 and snap.complete
    # Client and server buckets agree; at most a stray 429 from request timing, retried.
    assert client.stats["rate_limited"] <= 2


def test_each_list_counts_its_own_requests_and_pays_little_beyond_its_full_pages(emulator):
    """Both lists share one client at once; each reports the requests it made (the emulator's
    count per endpoint), and the windows' partly empty last pages cost little."""
    now = int(time.time())
    load(emulator, [product(i, now - (i * 7919) % (2 * 365 * 86400), prices=3) for i in range(6000)])
    client = gateway(emulator)
    before = httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["endpoints"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        products_job, prices_job = pool.submit(fetch_products_snapshot, client), pool.submit(fetch_prices_snapshot, client)
        products, prices = products_job.result(), prices_job.result()
    after = httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()["endpoints"]
    served = {path: after.get(f"GET {path}", 0) - before.get(f"GET {path}", 0) for path in ("/v1/products", "/v1/prices")}
    assert products.requests == products.stats["requests"] == served["/v1/products"]
    assert prices.requests == prices.stats["requests"] == served["/v1/prices"]
    assert products.requests + prices.requests == client.stats["requests"]
    assert len(products.frame) == 6000 and len(prices.frame) == 18000 and products.complete and prices.complete
    # 60 and 180 full pages (a third of the prices archived, listed apart). Beyond them: the
    # windows' partly empty last pages, the empty windows past the account's beginning (one
    # per slot at most, and the probe proving it) and the last windows split, for each walk.
    extra = lambda walks: walks * 3 * CONCURRENCY
    assert products.pages + 1 >= products.requests <= 60 * 1.05 + extra(1)
    assert prices.requests <= 180 * 1.05 + extra(2)
    assert 0.01 <= products.requests_per_object < 0.02
