"""reconcile_catalog end to end: wall time against the bound, and peak memory.

    .venv/bin/python bench/bench_reconcile.py                         # 100,000 products, 300,000 prices, 200 ms, 25 req/s
    .venv/bin/python bench/bench_reconcile.py --products 1000000      # the million (about 20 minutes)
    .venv/bin/python bench/bench_reconcile.py --smoke                 # 1,000 products, no latency: the checks, for CI

The job runs in this process (Dagster's in-process execution, RECON_EXECUTOR=in_process),
so its peak resident memory is this process's: the catalog read and canonicalised, both
snapshots streamed page by page into Arrow-backed frames, the diff, the drift table. The
emulator is a process of its own (as Stripe is), seeded in chunks so seeding never holds
the whole account here. Each product has three prices (monthly, yearly, a euro price with a
pound option); 0.8% of products carry planted drift (half renamed, half a re-priced monthly price), which the run must find
exactly. The bound is the slower of the two lists at the per-endpoint limit (100 objects a
page): the prices, 3 x products / 2,500 per second.

With `--profile` it also says where the time and the memory went: each step's wall time
(from the run's event log), this process's resident memory sampled every 0.2 s (at each
step's start and end, and its peak inside the step), and what each asset's frame holds in
memory (pandas' deep count, Arrow buffers included).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import resource
import tempfile
import threading
import time
from pathlib import Path

import dagster as dg
import httpx
import pyarrow.parquet as pq

from recon_pipeline.catalog import CatalogPrice, CatalogProduct, init_schema, make_engine, upsert_prices, upsert_products
from recon_pipeline.runs import run_job
from recon_pipeline.settings import Settings
from recon_pipeline.testing import emulator_process

PAGE = 100
CHUNK = 10_000


def chunk_of(start: int, stop: int, created_base: int) -> tuple[list[CatalogProduct], list[CatalogPrice], list[dict], int]:
    """Products [start, stop) on both sides; one in 250 renamed in Stripe, one in 250 re-priced."""
    products, prices, fixtures, planted = [], [], [], 0
    for i in range(start, stop):
        product_id = f"sku_{i:07d}"
        monthly = CatalogPrice(lookup_key=f"{product_id}_m", product_id=product_id, currency="usd", unit_amount=1000 + i % 9000, recurring_interval="month")
        yearly = CatalogPrice(lookup_key=f"{product_id}_y", product_id=product_id, currency="usd", unit_amount=10000 + i % 9000, recurring_interval="year")
        euro = CatalogPrice(lookup_key=f"{product_id}_e", product_id=product_id, currency="eur", unit_amount=900 + i % 900, currency_options={"gbp": {"unit_amount": 800 + i % 800}})
        products.append(CatalogProduct(id=product_id, name=f"Product {i}", metadata={"tier": str(i % 3)}, default_price=monthly.lookup_key))
        prices += [monthly, yearly, euro]
        created = created_base - (i * 7919) % (2 * 365 * 86400)
        stripe_prices = [
            {"currency": "usd", "unit_amount": 1000 + i % 9000 + (1 if i % 250 == 7 else 0), "recurring": {"interval": "month"}, "lookup_key": monthly.lookup_key, "created": created},
            {"currency": "usd", "unit_amount": yearly.unit_amount, "recurring": {"interval": "year"}, "lookup_key": yearly.lookup_key, "created": created},
            {"currency": "eur", "unit_amount": euro.unit_amount, "currency_options": {"gbp": {"unit_amount": 800 + i % 800}}, "lookup_key": euro.lookup_key, "created": created},
        ]
        name = f"Product {i}" + (" (renamed in Stripe)" if i % 250 == 3 else "")
        fixtures.append({"id": product_id, "name": name, "metadata": {"tier": str(i % 3)}, "created": created, "default_price": monthly.lookup_key, "prices": stripe_prices})
        planted += (i % 250 == 3) + (i % 250 == 7)
    return products, prices, fixtures, planted


class RssSampler:
    """This process's resident memory every `interval` seconds, as (time, MiB) pairs."""

    def __init__(self, interval: float = 0.2):
        self.interval, self.samples, self._stop = interval, [(time.time(), rss_mib())], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append((time.time(), rss_mib()))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> tuple[float, float, float]:
        """(at the start, the peak, at the end) of the samples in [start, end]."""
        inside = [mib for at, mib in self.samples if start <= at <= end] or [self.at(end)]
        return self.at(start), max(inside), self.at(end)

    def at(self, moment: float) -> float:
        before = [mib for at, mib in self.samples if at <= moment]
        return before[-1] if before else self.samples[0][1]


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def step_times(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, float, float]]:
    """(step, start, end) of each step of the run, in the order they started."""
    starts: dict[str, float] = {}
    ends: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or record.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            starts[record.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE"):
            ends[record.step_key] = record.timestamp
    return sorted(((step, starts[step], ends.get(step, starts[step])) for step in starts), key=lambda s: s[1])


def print_profile(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, sampler: RssSampler) -> None:
    print("step                      wall    RSS at start   peak in step   at end   (MiB)")
    for step, start, end in step_times(instance, result.run_id):
        first, peak, last = sampler.between(start, end)
        print(f"{step:<24} {end - start:>6.1f} s {first:>10,.0f} {peak:>14,.0f} {last:>9,.0f}")
    print("asset (Parquet file)      rows        on disk (MiB)   in Arrow (MiB)")
    for asset in ("local_products", "local_prices", "stripe_products", "stripe_prices"):
        path = Path(instance.storage_directory()) / f"{asset}.parquet"
        rows = pq.ParquetFile(path).metadata.num_rows
        in_memory = pq.read_table(path).nbytes / 2**20  # what it would cost held whole
        print(f"{asset:<24} {rows:>10,} {path.stat().st_size / 2**20:>14,.1f} {in_memory:>18,.1f}")


def seed(catalog_url: str, url: str, products: int) -> None:
    """Both sides, a chunk at a time (run in a process of its own: the pipeline's starts clean)."""
    engine = make_engine(catalog_url)
    init_schema(engine)
    for start in range(0, products, CHUNK):
        chunk, prices, fixtures, _ = chunk_of(start, min(products, start + CHUNK), int(time.time()))
        upsert_products(engine, chunk)
        upsert_prices(engine, prices)
        httpx.post(f"{url}/_emulator/fixtures", json={"products": fixtures}, timeout=600).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--products", type=int, default=100_000)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--smoke", action="store_true", help="the CI size: 1,000 products, no added latency")
    parser.add_argument("--profile", action="store_true", help="also each step's time and memory, and each frame's size")
    args = parser.parse_args()
    if args.smoke:
        args.products, args.latency_ms = 1000, 0

    with tempfile.TemporaryDirectory() as tmp, emulator_process() as url:
        catalog_url = f"sqlite:///{Path(tmp) / 'catalog.db'}"
        seeding = time.perf_counter()
        seeder = multiprocessing.get_context("spawn").Process(target=seed, args=(catalog_url, url, args.products))
        seeder.start()
        seeder.join()
        assert seeder.exitcode == 0, "seeding failed"
        planted = sum(1 for i in range(args.products) if i % 250 in (3, 7))  # as chunk_of plants them
        seeded_s = time.perf_counter() - seeding
        httpx.post(f"{url}/_emulator/faults", json={"latency_ms": args.latency_ms, "endpoint_rate_limit": args.rate}, timeout=5).raise_for_status()

        os.environ.update(
            DAGSTER_HOME=str(Path(tmp) / "dagster"), RECON_CATALOG_URL=catalog_url, STRIPE_API_BASE=url,
            RECON_STRIPE_RATE_LIMIT="1000", RECON_STRIPE_ENDPOINT_RATE_LIMIT=str(args.rate), RECON_EXECUTOR="in_process",
        )  # fmt: skip
        os.environ.pop("STRIPE_API_KEY", None)
        Path(os.environ["DAGSTER_HOME"]).mkdir()
        (Path(os.environ["DAGSTER_HOME"]) / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
        before_mib = rss_mib()
        with dg.DagsterInstance.get() as instance, RssSampler() as sampler:
            started = time.perf_counter()
            result = run_job("reconcile_catalog", instance=instance, quiet=True, settings=Settings.from_env())
            wall = time.perf_counter() - started
            peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # the process never seeded: its peak is the run's
            if args.profile:
                print_profile(instance, result, sampler)
        drift = result.asset_value("catalog_drift")
        assert len(drift) == planted, f"found {len(drift)} drift rows, planted {planted}"
        prices_total = 3 * args.products
        bound = max(args.products, prices_total) / (args.rate * PAGE)
        print(f"{args.products:,} products and {prices_total:,} prices (seeded in {seeded_s:.0f} s), {args.latency_ms} ms latency, {args.rate:g} requests/s per endpoint")
        print(f"reconcile_catalog: {wall:.1f} s against a {bound:.1f} s bound -> {bound / wall:.0%} of the bound")
        print(f"run {'succeeded' if result.success else 'failed (the drift check: planted drift above 1%)'}")
        print(f"drift found = planted: {len(drift):,} rows; peak memory of this process: {peak_mib:,.0f} MiB (before the run: {before_mib:,.0f} MiB)")


if __name__ == "__main__":
    main()
