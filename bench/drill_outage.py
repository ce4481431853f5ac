"""Outage drill: Stripe goes down while edits continue on both sides; who loses what?

    .venv/bin/python bench/drill_outage.py                       # 20 s outage
    .venv/bin/python bench/drill_outage.py --outage-s 120        # a couple of minutes
    recon-pipeline drill [...]                                   # the same script

Two identical setups, each a SQLite catalog and its own emulator account, get the same
edits for the whole drill: catalog renames (at --rate per second, random products) and
dashboard edits in Stripe (descriptions, a fifth as many), which reach Stripe even while
the API is down for us. From `outage_start` for `outage_s` seconds both emulators answer
503 to our key.

- naive: each catalog edit pushed once, in the request that made it; nothing comes back
  from Stripe (the hand-written-webhook baseline).
- ours: the outbox and a worker (retries with backoff); no webhooks reach us during the
  outage, so afterwards the affected hours are backfilled (`backfill_hours`, one run):
  their Stripe events come into the inbox and are applied (stripe_wins: dashboard edits
  are kept), and the hours' drift is repaired. A full `reconcile_catalog` confirms.

A lost update is a product whose catalog and Stripe disagree at the end. Bounded in time.
"""

from __future__ import annotations

import datetime as dt
import os
import random
import tempfile
import threading
import time
import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from naive_sync import naive_push  # noqa: E402  (the baseline lives here in bench/, never in the pipeline)

from recon_pipeline.backfill import hour_key
from recon_pipeline.catalog import CatalogProduct, init_schema, make_engine, read_products_frame, upsert_products
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.reconcile import diff_catalog, local_frame, stripe_frame
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway, fetch_products_snapshot
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain

KEY = "sk_test_drill"


@dataclass
class DrillReport:
    catalog_edits: int
    stripe_edits: int
    naive_failed_pushes: int
    naive_lost: int
    ours_lost: int
    outbox_caught_up_s: float
    backfill_s: float
    backfilled_hours: int

    def lines(self) -> list[str]:
        return [
            f"edits: {self.catalog_edits} in the catalog, {self.stripe_edits} in the Stripe dashboard",
            f"{'':<34}{'naive push':>12}{'ours':>12}",
            f"{'catalog edits that failed to send':<34}{self.naive_failed_pushes:>12}{'(retried)':>12}",
            f"{'lost updates (products differing)':<34}{self.naive_lost:>12}{self.ours_lost:>12}",
            f"recovery: outbox caught up {self.outbox_caught_up_s:.1f} s after the outage; backfill of "
            f"{self.backfilled_hours} hours took {self.backfill_s:.1f} s (one run)",
        ]


def _differing(engine, url: str) -> int:
    gateway = StripeGateway(KEY, url, global_rate=None, endpoint_rate=None)
    drift = diff_catalog(local_frame(read_products_frame(engine)), stripe_frame(fetch_products_snapshot(gateway).products))
    return int(drift["product_id"].nunique())


def run_drill(outage_start: float = 5, outage_s: float = 10, tail_s: float = 5, rate: float = 10, products: int = 100, seed: int = 7) -> DrillReport:
    rng = random.Random(seed)
    tmp = Path(tempfile.mkdtemp(prefix="recon-drill-"))
    ids = [f"sku_{i:04d}" for i in range(products)]
    with EmulatorServer() as naive_api, EmulatorServer() as our_api:
        engines = {}
        for name, api in (("naive", naive_api), ("ours", our_api)):
            engine = make_engine(f"sqlite:///{tmp / name}.db")
            init_schema(engine)
            upsert_products(engine, [CatalogProduct(id=i, name=f"{i} v0") for i in ids])
            httpx.post(f"{api.url}/_emulator/fixtures", json={"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}).raise_for_status()
            engines[name] = engine

        gateway = StripeGateway(KEY, our_api.url, global_rate=25, endpoint_rate=25, retry=RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0))
        policy = OutboxPolicy(max_attempts=1000, base_delay_s=0.5, max_delay_s=5.0)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                drain(engines["ours"], gateway, policy=policy)
                time.sleep(0.2)

        threading.Thread(target=worker, daemon=True).start()
        naive = httpx.Client(base_url=naive_api.url, headers={"Authorization": f"Bearer {KEY}"})
        started, outage_from = time.monotonic(), dt.datetime.now(dt.timezone.utc)
        edits = stripe_edits = failed = 0
        down = False
        outage_end = None
        while (elapsed := time.monotonic() - started) < outage_start + outage_s + tail_s:
            should_be_down = outage_start <= elapsed < outage_start + outage_s
            if should_be_down != down:
                down = should_be_down
                for api in (naive_api, our_api):
                    api.faults.update({"outage": down})
                if down:
                    outage_from = dt.datetime.now(dt.timezone.utc)
                else:
                    outage_end = time.monotonic()
            product_id = rng.choice(ids)
            name = f"{product_id} edit {edits}"
            update_product(engines["ours"], product_id, name=name)
            update_product(engines["naive"], product_id, name=name)
            failed += not naive_push(naive, product_id, name)
            edits += 1
            if edits % 5 == 0:  # someone edits in the Stripe dashboard: it works, whatever our connection does
                target = rng.choice(ids)
                for api in (naive_api, our_api):
                    with api.state.lock:
                        api.app.state.account.update_product(target, {"description": f"dashboard edit {stripe_edits}"}, {"id": None, "idempotency_key": None})
                stripe_edits += 1
            time.sleep(1 / rate)
        for api in (naive_api, our_api):
            api.faults.update({"outage": False})
        outage_end = outage_end or time.monotonic()
        while backlog(engines["ours"]).depth + backlog(engines["ours"]).in_flight and time.monotonic() - outage_end < 300:
            time.sleep(0.1)
        caught_up = time.monotonic() - outage_end
        stop.set()

        # Backfill the hours the outage touched, in one run, as the README's runbook says.
        os.environ.update(
            {"RECON_CATALOG_URL": str(engines["ours"].url), "STRIPE_API_BASE": our_api.url, "RECON_CONFLICT_POLICY": "stripe_wins", "DAGSTER_HOME": str(tmp / "dagster_home")}
        )
        (tmp / "dagster_home").mkdir(exist_ok=True)
        (tmp / "dagster_home" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        from recon_pipeline.definitions import build_defs

        first, last = hour_key(outage_from), hour_key(dt.datetime.now(dt.timezone.utc))
        hours = len(build_defs().resolve_job_def("backfill_hours").partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
        backfill_started = time.monotonic()
        with dg.DagsterInstance.get() as instance:
            result = build_defs().resolve_job_def("backfill_hours").execute_in_process(
                instance=instance,
                tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
                run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
                raise_on_error=False,
            )
        backfill_s = time.monotonic() - backfill_started
        if not result.success:
            raise RuntimeError(f"the backfill run {result.run_id} failed; see its logs in {tmp / 'dagster_home'}")
        return DrillReport(
            catalog_edits=edits,
            stripe_edits=stripe_edits,
            naive_failed_pushes=failed,
            naive_lost=_differing(engines["naive"], naive_api.url),
            ours_lost=_differing(engines["ours"], our_api.url),
            outbox_caught_up_s=caught_up,
            backfill_s=backfill_s,
            backfilled_hours=hours,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outage-start", type=float, default=5)
    parser.add_argument("--outage-s", type=float, default=20)
    parser.add_argument("--tail-s", type=float, default=5, help="edits go on this long after the outage")
    parser.add_argument("--rate", type=float, default=10, help="catalog edits per second")
    parser.add_argument("--products", type=int, default=200)
    args = parser.parse_args(argv)
    print(f"outage drill: {args.outage_s:g} s outage after {args.outage_start:g} s, edits go on {args.tail_s:g} s after it ...", flush=True)
    report = run_drill(args.outage_start, args.outage_s, args.tail_s, args.rate, args.products)
    print("\n".join(report.lines()))
    return 0 if report.ours_lost == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
