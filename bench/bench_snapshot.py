"""Products snapshot throughput: concurrent created-windows vs plain sequential pagination.

    .venv/bin/python bench/bench_snapshot.py                  # 10,000 products, 200 ms, 25 req/s
    .venv/bin/python bench/bench_snapshot.py --products 2000
    .venv/bin/python bench/bench_snapshot.py --smoke          # 1,000 products, no latency: the checks, for CI

The emulator holds an account of N products created over two years (as a real account's
would be), adds 200 ms to every request (as the real network would) and enforces the
per-endpoint limit of 25 requests/s (answering 429 above it). At 100 products a page the
endpoint limit bounds any client at 2,500 products/s; the target is >= 80% of that.
"""

from __future__ import annotations

import argparse
import random
import time

import httpx

from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.stripe_api import StripeGateway, fetch_products_snapshot

BOUND_PER_REQUEST = 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--sequential", action="store_true", help="also time plain sequential pagination")
    parser.add_argument("--smoke", action="store_true", help="the CI size: 1,000 products, no added latency")
    args = parser.parse_args()
    if args.smoke:
        args.products, args.latency_ms, args.sequential = 1000, 0, True

    rng = random.Random(1)
    now = int(time.time())
    products = [
        {"id": f"sku_{i:06d}", "name": f"Product {i}", "created": now - rng.randint(0, 2 * 365 * 86400),
         "price": {"unit_amount": 1000 + i, "currency": "usd", "recurring_interval": "month", "lookup_key": None}}
        for i in range(args.products)
    ]
    with EmulatorServer() as server:
        httpx.post(f"{server.url}/_emulator/fixtures", json={"products": products}, timeout=120).raise_for_status()
        httpx.post(f"{server.url}/_emulator/faults", json={"latency_ms": args.latency_ms, "endpoint_rate_limit": args.rate}, timeout=5).raise_for_status()
        bound = args.rate * BOUND_PER_REQUEST

        gateway = StripeGateway(api_key="sk_test_bench", api_base=server.url, global_rate=None, endpoint_rate=args.rate)
        snap = fetch_products_snapshot(gateway, concurrency=args.concurrency)
        ids = {p["id"] for p in snap.products}
        assert ids == {p["id"] for p in products}, "snapshot is missing products"
        assert snap.complete and snap.duplicates == 0, "the snapshot did not page every window to the end"
        assert all(isinstance(p["default_price"], dict) for p in snap.products if p["default_price"])
        rate = len(snap.products) / snap.seconds
        stats = httpx.get(f"{server.url}/_emulator/stats", timeout=5).json()
        print(f"concurrent windows: {len(snap.products):,} products in {snap.seconds:.2f} s = {rate:,.0f} products/s "
              f"= {rate / bound:.0%} of the {bound:,.0f}/s bound; {snap.requests} requests, {snap.pages} pages, "
              f"complete={snap.complete}, duplicates={snap.duplicates}, 429s from the emulator: {stats['rate_limited']}")

        if args.sequential:
            sequential = StripeGateway(api_key="sk_test_bench", api_base=server.url, global_rate=None, endpoint_rate=args.rate)
            started = time.perf_counter()
            count = sum(1 for _ in sequential.list_all("/v1/products", {"expand": ["data.default_price"]}))
            seconds = time.perf_counter() - started
            assert count == len(products), f"sequential pagination listed {count} of {len(products)} products"
            print(f"sequential pages:   {count:,} products in {seconds:.2f} s = {count / seconds:,.0f} products/s = {count / seconds / bound:.0%} of the bound")


if __name__ == "__main__":
    main()
