"""Outage drill: catalog edits keep coming while Stripe is down; what does each path lose?

    .venv/bin/python bench/drill_outage.py                         # 20 s outage, 10 s of edits after it
    .venv/bin/python bench/drill_outage.py --outage-start 30 --outage-s 120

Two identical catalogs (SQLite) and two emulator accounts receive the same edits, each to
a random one of --products products, at --rate per second, until --tail-s seconds after
the outage (a long tail would re-edit every product and hide what the naive path lost). Between --outage-start and
--outage-start + --outage-s both emulators are down (503). The naive path pushes each edit
once (bench/naive_sync.py); ours commits the edit with its outbox row and a worker drains
the outbox (rate limits, retries with backoff). At the end, a lost update is a product
whose name in Stripe is not its final name in the catalog. Recovery is the time from the
end of the outage until our outbox is empty.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from naive_sync import naive_push  # noqa: E402

from recon_pipeline.catalog import CatalogProduct, init_schema, make_engine, read_products_frame, upsert_products  # noqa: E402
from recon_pipeline.catalog.changes import update_product  # noqa: E402
from recon_pipeline.emulator import EmulatorServer  # noqa: E402
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway  # noqa: E402
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain  # noqa: E402

KEY = "sk_test_drill"


def stripe_names(url: str) -> dict[str, str]:
    names, params = {}, {"limit": 100}
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}) as client:
        while True:
            page = client.get("/v1/products", params=params).json()
            names.update({p["id"]: p["name"] for p in page["data"]})
            if not page["has_more"]:
                return names
            params["starting_after"] = page["data"][-1]["id"]


def lost(engine, url: str) -> int:
    catalog = read_products_frame(engine).set_index("id")["name"].to_dict()
    remote = stripe_names(url)
    return sum(remote.get(pid) != name for pid, name in catalog.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-start", type=float, default=20)
    parser.add_argument("--tail-s", type=float, default=10, help="edits go on this long after the outage")
    parser.add_argument("--outage-s", type=float, default=20)
    parser.add_argument("--rate", type=float, default=10, help="edits per second")
    parser.add_argument("--products", type=int, default=200)
    args = parser.parse_args()
    args.seconds = args.outage_start + args.outage_s + args.tail_s
    rng = random.Random(7)

    tmp = Path(tempfile.mkdtemp(prefix="recon-drill-"))
    with EmulatorServer() as naive_api, EmulatorServer() as our_api:
        ids = [f"sku_{i:04d}" for i in range(args.products)]
        engines = {}
        for name, api in (("naive", naive_api), ("ours", our_api)):
            engine = make_engine(f"sqlite:///{tmp / name}.db")
            init_schema(engine)
            upsert_products(engine, [CatalogProduct(id=i, name=f"{i} v0") for i in ids])
            httpx.post(f"{api.url}/_emulator/fixtures", json={"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}).raise_for_status()
            engines[name] = engine

        gateway = StripeGateway(KEY, our_api.url, global_rate=25, endpoint_rate=25, retry=RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0))
        policy = OutboxPolicy(max_attempts=1000, base_delay_s=0.5, max_delay_s=10.0)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                drain(engines["ours"], gateway, policy=policy)
                time.sleep(0.2)

        threading.Thread(target=worker, daemon=True).start()
        naive_client = httpx.Client(base_url=naive_api.url, headers={"Authorization": f"Bearer {KEY}"})
        started = time.monotonic()
        edits, naive_failed, outage_on, outage_end, recovered_at = 0, 0, False, None, None
        while (elapsed := time.monotonic() - started) < args.seconds:
            if outage_end and recovered_at is None:
                queue = backlog(engines["ours"])
                # Recovered: nothing left that is older than a moment (new edits keep arriving).
                if queue.oldest_pending_age_s < 1.0:
                    recovered_at = time.monotonic()
            down = args.outage_start <= elapsed < args.outage_start + args.outage_s
            if down != outage_on:
                for api in (naive_api, our_api):
                    api.faults.update({"outage": down})
                outage_on = down
                if not down:
                    outage_end = time.monotonic()
            product_id = rng.choice(ids)
            name = f"{product_id} edit {edits}"
            update_product(engines["ours"], product_id, name=name)  # change + outbox row, one transaction
            update_product(engines["naive"], product_id, name=name)
            naive_failed += not naive_push(naive_client, product_id, name)
            edits += 1
            time.sleep(1 / args.rate)
        for api in (naive_api, our_api):
            api.faults.update({"outage": False})
        outage_end = outage_end or time.monotonic()
        while backlog(engines["ours"]).depth + backlog(engines["ours"]).in_flight and time.monotonic() - outage_end < 600:
            time.sleep(0.2)
        recovered_after = (recovered_at or time.monotonic()) - outage_end
        stop.set()

        print(f"edits: {edits:,} over {args.seconds:.0f} s to {args.products} products; outage {args.outage_s:.0f} s from t={args.outage_start:.0f} s")
        print(f"{'':<28}{'naive push':>12}{'outbox':>12}")
        print(f"{'edits that failed to send':<28}{naive_failed:>12}{'(retried)':>12}")
        print(f"{'lost updates (final state)':<28}{lost(engines['naive'], naive_api.url):>12}{lost(engines['ours'], our_api.url):>12}")
        print(f"outbox: caught up (oldest waiting change < 1 s old) {recovered_after:.1f} s after the outage ended; dead letters {backlog(engines['ours']).dead}")


if __name__ == "__main__":
    main()
