"""Outage drill: Stripe goes down while edits continue on both sides; is anything lost?

    recon-pipeline drill [--outage-s 20]                 ours alone
    .venv/bin/python bench/drill_outage.py [...]         ours beside the naive push (bench/)

Each side of the drill is a SQLite catalog and its own emulator account, and all sides get
the same edits for the whole drill: catalog renames (at `rate` per second, random
products) and dashboard edits in Stripe (descriptions, a fifth as many), which reach
Stripe even while the API is down for us. From `outage_start` for `outage_s` seconds every
emulator answers 503 to our key.

- ours: the outbox and a worker (retries with backoff); no webhooks reach us during the
  outage, so afterwards the affected hours are backfilled (`backfill_hours`, one run):
  their Stripe events come into the inbox and are applied (stripe_wins: dashboard edits
  are kept), and the hours' drift is repaired.
- baselines (given by the caller, e.g. the naive push of bench/naive_sync.py): each catalog
  edit is pushed once by the baseline's function, in the request that made it; nothing
  comes back from Stripe. The package itself never pushes that way.

A lost update is a product whose catalog and Stripe disagree at the end. Bounded in time.
"""

from __future__ import annotations

import datetime as dt
import random
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import httpx

from recon_pipeline.backfill import hour_key
from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.changes import update_product
from recon_pipeline.emulator import EmulatorServer
from recon_pipeline.policies import ConflictPolicy, Executor
from recon_pipeline.repair import full_drift
from recon_pipeline.settings import Settings
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain

KEY = "sk_test_drill"
OURS = "ours"
# A baseline pushes one catalog edit (product id, new name) through its own client, once: True if it got through.
Baseline = Callable[[httpx.Client, str, str], bool]


@dataclass
class DrillSide:
    """One setup that receives the drill's edits: its own catalog and emulator account."""

    name: str
    api: EmulatorServer
    catalog: Catalog
    push: Baseline | None = None  # None: the outbox carries the edit
    failed_pushes: int = 0
    lost: int = 0


@dataclass
class DrillReport:
    catalog_edits: int
    stripe_edits: int
    sides: dict[str, DrillSide] = field(default_factory=dict)
    outbox_caught_up_s: float = 0.0
    backfill_s: float = 0.0
    backfilled_hours: int = 0

    @property
    def ours_lost(self) -> int:
        return self.sides[OURS].lost

    def lines(self) -> list[str]:
        names = list(self.sides)
        lines = [f"edits: {self.catalog_edits} in the catalog, {self.stripe_edits} in the Stripe dashboard", f"{'':<34}" + "".join(f"{n:>14}" for n in names)]
        failed = ["(retried)" if self.sides[n].push is None else str(self.sides[n].failed_pushes) for n in names]
        lines.append(f"{'catalog edits that failed to send':<34}" + "".join(f"{f:>14}" for f in failed))
        lines.append(f"{'lost updates (products differing)':<34}" + "".join(f"{self.sides[n].lost:>14}" for n in names))
        lines.append(
            f"recovery: outbox caught up {self.outbox_caught_up_s:.1f} s after the outage; backfill of "
            f"{self.backfilled_hours} hours took {self.backfill_s:.1f} s (one run)"
        )
        return lines


def _side(name: str, api: EmulatorServer, folder: Path, ids: list[str], push: Baseline | None) -> DrillSide:
    catalog = Catalog.open(f"sqlite:///{folder / name.replace(' ', '_')}.db")
    upsert_products(catalog.engine, [CatalogProduct(id=i, name=f"{i} v0") for i in ids])
    fixtures = {"products": [{"id": i, "name": f"{i} v0", "created": 1_700_000_000} for i in ids]}
    httpx.post(f"{api.url}/_emulator/fixtures", json=fixtures).raise_for_status()
    return DrillSide(name, api, catalog, push)


def _waiting(catalog: Catalog) -> int:
    queue = backlog(catalog.engine)
    return queue.depth + queue.in_flight


def _backfill(ours: DrillSide, first: str, last: str, home: Path) -> int:
    """Backfill hours first..last of our side in one run, as the README's runbook says; returns the hours."""
    from recon_pipeline.definitions import build_defs

    settings = Settings(
        catalog_url=str(ours.catalog.engine.url),
        stripe_api_key=KEY,
        stripe_api_base=ours.api.url,
        conflict_policy=ConflictPolicy.STRIPE_WINS,
        executor=Executor.IN_PROCESS,
    )
    job = build_defs(settings).resolve_job_def("backfill_hours")
    assert job.partitions_def is not None  # backfill_hours is partitioned by hour
    hours = len(job.partitions_def.get_partition_keys_in_range(dg.PartitionKeyRange(first, last)))
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        result = job.execute_in_process(
            instance=instance,
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
            run_config={"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}},
            raise_on_error=False,
        )
    if not result.success:
        raise RuntimeError(f"the backfill run {result.run_id} failed; see its logs in {home}")
    return hours


def run_drill(
    outage_start: float = 5, outage_s: float = 10, tail_s: float = 5, rate: float = 10, products: int = 100, seed: int = 7,
    baselines: Mapping[str, Baseline] | None = None,
) -> DrillReport:  # fmt: skip
    """Run the drill on fresh emulators and catalogs; every side gets the same edits."""
    rng = random.Random(seed)
    folder = Path(tempfile.mkdtemp(prefix="recon-drill-"))
    ids = [f"sku_{i:04d}" for i in range(products)]
    with ExitStack() as stack:
        sides = {name: _side(name, stack.enter_context(EmulatorServer()), folder, ids, push) for name, push in (baselines or {}).items()}
        ours = sides[OURS] = _side(OURS, stack.enter_context(EmulatorServer()), folder, ids, None)
        clients = {s.name: stack.enter_context(httpx.Client(base_url=s.api.url, headers={"Authorization": f"Bearer {KEY}"})) for s in sides.values()}

        gateway = StripeGateway(KEY, ours.api.url, global_rate=25, endpoint_rate=25, retry=RetryPolicy(max_attempts=3, base_delay=0.1, max_delay=1.0))
        policy = OutboxPolicy(max_attempts=1000, base_delay_s=0.5, max_delay_s=5.0)
        stop = threading.Event()

        def worker() -> None:
            while not stop.is_set():
                drain(ours.catalog, gateway, policy=policy)
                stop.wait(0.2)

        threading.Thread(target=worker, daemon=True).start()
        started, outage_from = time.monotonic(), dt.datetime.now(dt.UTC)
        edits = stripe_edits = 0
        down = False
        outage_end = None
        while (elapsed := time.monotonic() - started) < outage_start + outage_s + tail_s:
            should_be_down = outage_start <= elapsed < outage_start + outage_s
            if should_be_down != down:
                down = should_be_down
                for side in sides.values():
                    side.api.faults.update({"outage": down})
                if down:
                    outage_from = dt.datetime.now(dt.UTC)
                else:
                    outage_end = time.monotonic()
            product_id = rng.choice(ids)
            name = f"{product_id} edit {edits}"
            for side in sides.values():
                update_product(side.catalog, product_id, name=name)
                if side.push is not None:
                    side.failed_pushes += not side.push(clients[side.name], product_id, name)
            edits += 1
            if edits % 5 == 0:  # someone edits in the Stripe dashboard: it works, whatever our connection does
                target = rng.choice(ids)
                for side in sides.values():
                    with side.api.state.lock:
                        side.api.app.state.account.update_product(target, {"description": f"dashboard edit {stripe_edits}"}, {"id": None, "idempotency_key": None})
                stripe_edits += 1
            time.sleep(1 / rate)
        for side in sides.values():
            side.api.faults.update({"outage": False})
        outage_end = outage_end or time.monotonic()
        while _waiting(ours.catalog) and time.monotonic() - outage_end < 300:
            time.sleep(0.1)
        caught_up = time.monotonic() - outage_end
        stop.set()

        first, last = hour_key(outage_from), hour_key(dt.datetime.now(dt.UTC))
        backfill_started = time.monotonic()
        hours = _backfill(ours, first, last, folder / "dagster_home")
        backfill_s = time.monotonic() - backfill_started
        for side in sides.values():
            drift = full_drift(side.catalog, StripeGateway(KEY, side.api.url, global_rate=None, endpoint_rate=None))
            side.lost = int(drift["product_id"].nunique())
        return DrillReport(edits, stripe_edits, sides, caught_up, backfill_s, hours)
