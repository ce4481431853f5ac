"""Outbox throughput against a write limit: >= 90% of the limit, every change delivered once.

    .venv/bin/python bench/bench_outbox.py                      # 2,000 changes, 50 writes/s
    .venv/bin/python bench/bench_outbox.py --changes 500 --limit 25
    .venv/bin/python bench/bench_outbox.py --smoke              # 200 changes: the checks, for CI

N products each get a catalog edit (change + outbox row in one transaction). The emulator
answers 429 above --limit requests/s per endpoint; the client's endpoint limit is the
same. One drain pushes them all: Stripe state read 100 products a request, then one
`POST /v1/products/{id}` per product.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import httpx

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.sync.outbox import backlog, drain


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--changes", type=int, default=2000)
    parser.add_argument("--limit", type=float, default=50.0)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 200 changes")
    args = parser.parse_args()
    if args.smoke:
        args.changes = 200

    with tempfile.TemporaryDirectory() as tmp, EmulatorServer() as server:
        catalog = Catalog.open(f"sqlite:///{Path(tmp) / 'catalog.db'}")
        engine = catalog.engine
        ids = [f"sku_{i:05d}" for i in range(args.changes)]
        upsert_products(engine, [CatalogProduct(id=i, name=f"{i} v0") for i in ids])
        httpx.post(f"{server.url}/_emulator/fixtures", json={"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}, timeout=120).raise_for_status()
        for i in ids:
            update_product(catalog, i, name=f"{i} v1")
        server.faults.update({"endpoint_rate_limit": args.limit})
        gateway = StripeGateway("sk_test_bench", server.url, global_rate=args.limit * 4, endpoint_rate=args.limit)
        started = time.perf_counter()
        result = drain(catalog, gateway, concurrency=8)
        seconds = time.perf_counter() - started
        stats = httpx.get(f"{server.url}/_emulator/stats").json()
        writes = stats["endpoints"].get("POST /v1/products/{id}", 0)
        server.faults.update({"endpoint_rate_limit": None})
        names = {}
        for start in range(0, len(ids), 100):
            page = httpx.get(f"{server.url}/v1/products", params=[("limit", "100"), *[("ids[]", i) for i in ids[start:start + 100]]], headers={"Authorization": "Bearer sk_test_bench"}).json()
            names.update({p["id"]: p["name"] for p in page["data"]})
        wanted = catalog.rows().set_index("id")["name"].to_dict()
        differing = sum(names.get(k) != v for k, v in wanted.items())
        print(f"delivered {result.delivered_rows:,} changes ({result.pushed_products:,} products) in {seconds:.1f} s; backlog left {backlog(engine).depth}")
        print(f"writes: {writes:,} = {writes / seconds:.1f}/s against a {args.limit:g}/s limit -> {writes / seconds / args.limit:.0%}; "
              f"reads: {stats['endpoints'].get('GET /v1/products', 0)}; 429s: {stats['rate_limited']}; client retries: {gateway.stats['retries']}")
        print(f"products whose Stripe name differs from the catalog: {differing}")
        assert differing == 0 and backlog(engine).depth == 0 and result.delivered_rows == args.changes, "a change was lost"


if __name__ == "__main__":
    main()
