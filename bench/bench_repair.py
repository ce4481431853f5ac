"""Repair throughput against the emulator with a write limit: >= 90% of the limit, no duplicates.

    .venv/bin/python bench/bench_repair.py                      # 5,000 drifted products, 50 writes/s
    .venv/bin/python bench/bench_repair.py --products 1000 --limit 25
    .venv/bin/python bench/bench_repair.py --smoke              # 300 products: the checks, for CI

5,000 catalog products whose names drifted in Stripe (one `POST /v1/products/{id}` each)
are repaired through the one client wrapper, its endpoint limit set to the emulator's
write limit (the emulator answers 429 above it). Prints writes/s against the limit, the
429s seen, and checks afterwards that no product or price was duplicated and the drift is
zero.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from recon_pipeline.catalog import Catalog
from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.repair import converge, read_sides
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.testing import priced_fixture, seed_priced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=5000)
    parser.add_argument("--limit", type=float, default=50.0, help="write limit, requests/s per endpoint")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 300 products")
    args = parser.parse_args()
    if args.smoke:
        args.products = 300

    with tempfile.TemporaryDirectory() as tmp, EmulatorServer(host="127.0.0.1", port=0) as server:
        catalog = Catalog.open(f"sqlite:///{Path(tmp) / 'catalog.db'}")
        ids = [f"sku_{i:05d}" for i in range(args.products)]
        seed_priced(catalog, ids, name="Product {id}")
        stripe_side = [priced_fixture(product_id, f"Product {product_id} (stale)", created=1_700_000_000 + i, default_price=f"{product_id}:default") for i, product_id in enumerate(ids)]
        httpx.post(f"{server.url}/_emulator/fixtures", json={"products": stripe_side}, timeout=120).raise_for_status()

        # Both sides read before the clock starts: the benchmark times the writes.
        reader = StripeGateway(api_key="sk_test_bench", api_base=server.url, global_rate=1000, endpoint_rate=1000)
        sides = read_sides(catalog, reader)
        httpx.post(f"{server.url}/_emulator/faults", json={"endpoint_rate_limit": args.limit}, timeout=5).raise_for_status()
        writer = StripeGateway(api_key="sk_test_bench", api_base=server.url, global_rate=args.limit * 4, endpoint_rate=args.limit)
        started = time.perf_counter()
        converged = converge(catalog, writer, sides=sides, run_id="bench", concurrency=args.concurrency, verify=False)
        seconds = time.perf_counter() - started
        result = converged.result
        assert len(converged.plan.actions) == args.products
        stats = httpx.get(f"{server.url}/_emulator/stats", timeout=5).json()
        httpx.post(f"{server.url}/_emulator/faults", json={"endpoint_rate_limit": None}, timeout=5).raise_for_status()

        after = read_sides(catalog, reader)
        remaining = after.drift()
        ids = after.stripe["product_id"].tolist()
        rate = result.writes / seconds
        print(f"products repaired: {result.count('applied'):,} of {args.products:,}; dead letters: {result.count('dead_letter')}")
        print(f"writes: {result.writes:,} in {seconds:.1f} s = {rate:.1f} writes/s; limit {args.limit:g}/s -> {rate / args.limit:.1%} of the limit")
        print(f"client retries: {writer.stats.get('retries', 0)}, 429s seen by the client: {writer.stats.get('rate_limited', 0)}; emulator stats: {stats.get('status_counts', stats)}")
        print(f"drift after: {len(remaining)}; duplicate product ids: {len(ids) - len(set(ids))}")
        assert remaining.empty and len(ids) == len(set(ids)) and result.count("applied") == args.products, "repair did not converge"


if __name__ == "__main__":
    main()
