"""Snapshot throughput: products and prices listed side by side, concurrent created-windows
vs plain sequential pagination.

    .venv/bin/python bench/bench_snapshot.py                  # 100,000 products, 300,000 prices, 200 ms, 25 req/s
    .venv/bin/python bench/bench_snapshot.py --products 10000
    .venv/bin/python bench/bench_snapshot.py --smoke          # 1,000 products, 3,000 prices, no latency: the checks, for CI

The emulator (its own process, as Stripe is) holds an account of N products created over
two years, each with three prices (monthly, yearly, and a euro price with a pound currency
option), adds 200 ms to every request (as the real network would) and enforces the
per-endpoint limit of 25 requests/s (answering 429 above it). At 100 objects a page that
bounds each endpoint at 2,500 objects/s: the products and the prices are listed at the same
time, each on its own endpoint limit, so the bound is the slower of the two lists (the
prices: three times as many). The target is >= 90% of it.
"""

from __future__ import annotations

import argparse
import random
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from recon_pipeline.reconcile.snapshot import CONCURRENCY, fetch_prices_snapshot, fetch_products_snapshot
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.testing import emulator_process

PAGE = 100


def account(products: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    now = int(time.time())
    out = []
    for i in range(products):
        created = now - rng.randint(0, 2 * 365 * 86400)
        monthly = {"currency": "usd", "unit_amount": 1000 + i, "recurring": {"interval": "month"}, "lookup_key": f"sku_{i:06d}_m", "created": created}
        yearly = {"currency": "usd", "unit_amount": 10000 + i, "recurring": {"interval": "year"}, "lookup_key": f"sku_{i:06d}_y", "created": created}
        euro = {"currency": "eur", "unit_amount": 900 + i, "currency_options": {"gbp": {"unit_amount": 800 + i}}, "lookup_key": f"sku_{i:06d}_e", "created": created}
        out.append({"id": f"sku_{i:06d}", "name": f"Product {i}", "created": created, "prices": [monthly, yearly, euro]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--sequential", action="store_true", help="also time plain sequential pagination of the products")
    parser.add_argument("--smoke", action="store_true", help="the CI size: 1,000 products, no added latency")
    args = parser.parse_args()
    if args.smoke:
        args.products, args.latency_ms, args.sequential = 1000, 0, True

    with emulator_process() as url:
        fixtures = account(args.products)
        for start in range(0, len(fixtures), 20_000):
            httpx.post(f"{url}/_emulator/fixtures", json={"products": fixtures[start : start + 20_000]}, timeout=300).raise_for_status()
        prices_total = sum(len(p["prices"]) for p in fixtures)
        httpx.post(f"{url}/_emulator/faults", json={"latency_ms": args.latency_ms, "endpoint_rate_limit": args.rate}, timeout=5).raise_for_status()
        bound = args.rate * PAGE  # objects/s per endpoint

        gateway = StripeGateway(api_key="sk_test_bench", api_base=url, global_rate=None, endpoint_rate=args.rate)
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=2) as pool:
            products_job = pool.submit(fetch_products_snapshot, gateway, args.concurrency)
            prices_job = pool.submit(fetch_prices_snapshot, gateway, args.concurrency)
            products, prices = products_job.result(), prices_job.result()
        wall = time.perf_counter() - started
        assert set(products.whole()["product_id"]) == {p["id"] for p in fixtures}, "the snapshot is missing products"
        assert len(prices.whole()) == prices_total and prices.whole()["price_id"].is_unique, "the snapshot is missing prices"
        assert products.complete and prices.complete and products.duplicates == prices.duplicates == 0, "a window was not paged to the end"
        assert (prices.whole()["currency_options"] != "").sum() == args.products, "currency options not expanded"
        stats = httpx.get(f"{url}/_emulator/stats", timeout=5).json()
        wall_bound = max(args.products, prices_total) / bound
        print(f"side by side: {args.products:,} products and {prices_total:,} prices in {wall:.1f} s; bound {wall_bound:.1f} s "
              f"(the prices endpoint at {bound:,.0f}/s) -> {wall_bound / wall:.0%} of the bound")
        print(f"  products: {products.seconds:.1f} s = {args.products / products.seconds:,.0f}/s = {args.products / products.seconds / bound:.0%} of its endpoint's bound; "
              f"{products.requests:,} requests ({products.requests_per_object:.4f} per product; {-(-args.products // PAGE):,} full pages would do), {products.pages:,} pages")
        print(f"  prices:   {prices.seconds:.1f} s = {prices_total / prices.seconds:,.0f}/s = {prices_total / prices.seconds / bound:.0%} of its endpoint's bound; "
              f"{prices.requests:,} requests ({prices.requests_per_object:.4f} per price; {-(-prices_total // PAGE):,} full pages would do), {prices.pages:,} pages (active and archived listed apart)")
        print(f"  client's wait for its rate budget: products {products.stats['throttle_wait_s']:.1f} s, prices {prices.stats['throttle_wait_s']:.1f} s (summed over threads)")
        print(f"  429s from the emulator: {stats['rate_limited']}; retries by the client: {gateway.stats.get('retries', 0)}")

        if args.sequential:
            sequential = StripeGateway(api_key="sk_test_bench", api_base=url, global_rate=None, endpoint_rate=args.rate)
            started = time.perf_counter()
            count = sum(1 for _ in sequential.list_all("/v1/products", {}))
            seconds = time.perf_counter() - started
            assert count == args.products, f"sequential pagination listed {count} of {args.products} products"
            print(f"sequential pages (products): {count:,} in {seconds:.2f} s = {count / seconds:,.0f}/s = {count / seconds / bound:.0%} of the bound")


if __name__ == "__main__":
    main()
