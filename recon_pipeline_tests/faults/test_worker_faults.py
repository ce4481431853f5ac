"""Worker faults: SIGKILL mid-drain, and PostgreSQL dropping its connections mid-drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter

import pytest
import stripe
from sqlalchemy import create_engine, func, select, text

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import create_product, update_product
from recon_pipeline.catalog.schema import sync_ledger
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain
from recon_pipeline.testing import priced_product, wait_until
from recon_pipeline_tests.conftest import ADMIN_URL

pytestmark = pytest.mark.postgres


def stripe_names(emulator) -> dict[str, str]:
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    return {p.id: p.name for p in client.v1.products.list(params={"limit": 100}).auto_paging_iter()}


def catalog_names(catalog: Catalog) -> dict[str, str]:
    return catalog.rows().set_index("id")["name"].to_dict()


def seed(url: str, count: int) -> Catalog:
    catalog = Catalog.open(url)
    for i in range(count):
        create_product(catalog, *priced_product(f"sku_{i:03d}", f"P{i}", 100 + i))
        update_product(catalog, f"sku_{i:03d}", name=f"P{i} final")
    return catalog


def writes_made(catalog: Catalog) -> int:
    with catalog.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(sync_ledger)).scalar_one()


def test_sigkill_of_the_worker_mid_drain_loses_and_duplicates_nothing(postgres_url, emulator):
    catalog = seed(postgres_url, 80)
    engine = catalog.engine
    emulator.faults.update({"latency_ms": 30})
    env = {**os.environ, "RECON_CATALOG_URL": postgres_url, "STRIPE_API_BASE": emulator.url, "RECON_STRIPE_RATE_LIMIT": "1000"}
    env.pop("STRIPE_API_KEY", None)
    worker = subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", "worker", "--concurrency", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until(lambda: writes_made(catalog) >= 20, timeout=60, what="the worker to be mid-drain")
    assert worker.poll() is None and backlog(engine).depth + backlog(engine).in_flight > 0, "the worker finished before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    emulator.faults.update({"latency_ms": 0})
    # Its claims expire (lease), and another worker finishes the job.
    result = drain(catalog, StripeGateway("sk_test_after", emulator.url, global_rate=None, endpoint_rate=None), policy=OutboxPolicy(lease_s=0.0))
    assert result.dead == 0
    assert backlog(engine).depth == backlog(engine).in_flight == 0
    assert stripe_names(emulator) == catalog_names(catalog)
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    prices = Counter(p.product for p in client.v1.prices.list(params={"limit": 100}).auto_paging_iter())
    assert set(prices.values()) == {1}, "a product got more than one price"


def test_postgresql_dropping_connections_mid_drain_loses_nothing(postgres_url, postgres_database, emulator):
    catalog = seed(postgres_url, 60)
    engine = catalog.engine
    emulator.faults.update({"latency_ms": 20})
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    dropped: list[int] = []

    def drop_connections() -> None:  # what a PostgreSQL restart does to a worker's connections, every 0.4 s
        while not stop.wait(0.4):
            with admin.connect() as conn:
                killed = conn.execute(
                    text("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = :db AND pid <> pg_backend_pid()"),
                    {"db": postgres_database},
                ).scalar()
            dropped.append(killed)

    killer = threading.Thread(target=drop_connections, daemon=True)
    killer.start()
    gateway = StripeGateway("sk_test_pg", emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(3, 0.05, 0.2))
    policy = OutboxPolicy(base_delay_s=0.05, max_delay_s=0.2, lease_s=1.0)

    def drained(batch_size: int) -> bool:
        """One pass; True once nothing is left. The database may go away under any query: the next pass retries."""
        try:
            drain(catalog, gateway, policy=policy, batch_size=batch_size)
            queue = backlog(engine)
            return queue.depth == queue.in_flight == 0
        except Exception:
            return False

    try:
        # Drain in small batches while connections drop, until some were dropped mid-drain.
        wait_until(lambda: drained(10) or sum(dropped) > 2, timeout=60, what="connections dropped mid-drain")
    finally:
        stop.set()
        killer.join()
    emulator.faults.update({"latency_ms": 0})
    wait_until(lambda: drained(100), timeout=40, interval=0.2, what="the outbox to drain after the drops")
    assert sum(dropped) > 0, "no connection was dropped: the fault did not happen"
    assert backlog(engine).dead == 0
    assert stripe_names(emulator) == catalog_names(catalog)
    admin.dispose()
