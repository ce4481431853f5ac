"""Worker faults: SIGKILL mid-drain, and PostgreSQL dropping its connections mid-drain."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter

import pytest
import stripe
from sqlalchemy import create_engine, text

from recon_pipeline.catalog import CatalogProduct, init_schema, make_engine, read_products_frame
from recon_pipeline.catalog.changes import create_product, update_product
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain
from recon_pipeline_tests.conftest import POSTGRES_ADMIN_URL

pytestmark = pytest.mark.postgres


def stripe_names(emulator) -> dict[str, str]:
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    return {p.id: p.name for p in client.v1.products.list(params={"limit": 100}).auto_paging_iter()}


def catalog_names(engine) -> dict[str, str]:
    return read_products_frame(engine).set_index("id")["name"].to_dict()


def seed(engine, count: int) -> None:
    init_schema(engine)
    for i in range(count):
        create_product(engine, CatalogProduct(id=f"sku_{i:03d}", name=f"P{i}", unit_amount=100 + i, currency="usd"))
        update_product(engine, f"sku_{i:03d}", name=f"P{i} final")


def test_sigkill_of_the_worker_mid_drain_loses_and_duplicates_nothing(postgres_url, emulator):
    engine = make_engine(postgres_url)
    seed(engine, 80)
    emulator.faults.update({"latency_ms": 30})
    env = {**os.environ, "RECON_CATALOG_URL": postgres_url, "STRIPE_API_BASE": emulator.url, "RECON_STRIPE_RATE_LIMIT": "1000"}
    env.pop("STRIPE_API_KEY", None)
    worker = subprocess.Popen([sys.executable, "-m", "recon_pipeline.cli", "worker", "--concurrency", "4"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(2.5)
    assert worker.poll() is None and backlog(engine).depth + backlog(engine).in_flight > 0, "the worker finished before it could be killed"
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait(timeout=10)
    emulator.faults.update({"latency_ms": 0})
    # Its claims expire (lease), and another worker finishes the job.
    result = drain(engine, StripeGateway("sk_test_after", emulator.url, global_rate=None, endpoint_rate=None), policy=OutboxPolicy(lease_s=0.0))
    assert result.dead == 0
    assert backlog(engine).depth == backlog(engine).in_flight == 0
    assert stripe_names(emulator) == catalog_names(engine)
    client = stripe.StripeClient("sk_test_check", base_addresses={"api": emulator.url}, max_network_retries=0)
    prices = Counter(p.product for p in client.v1.prices.list(params={"limit": 100}).auto_paging_iter())
    assert set(prices.values()) == {1}, "a product got more than one price"


def test_postgresql_dropping_connections_mid_drain_loses_nothing(postgres_url, postgres_database, emulator):
    engine = make_engine(postgres_url)
    seed(engine, 60)
    emulator.faults.update({"latency_ms": 20})
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    stop = threading.Event()
    dropped = []

    def drop_connections() -> None:  # what a PostgreSQL restart does to a worker's connections
        while not stop.is_set():
            time.sleep(0.4)
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
    deadline = time.monotonic() + 60
    errors = 0
    try:
        while time.monotonic() < deadline:
            try:
                drain(engine, gateway, policy=policy, batch_size=10)
            except Exception:  # the database went away under us: the next pass retries
                errors += 1
            if time.monotonic() > deadline - 55 and sum(dropped) > 0:
                break
            time.sleep(0.05)
    finally:
        stop.set()
        killer.join()
    emulator.faults.update({"latency_ms": 0})
    for _ in range(100):
        try:
            drain(engine, gateway, policy=policy)
        except Exception:
            errors += 1
        queue = backlog(engine)
        if queue.depth == queue.in_flight == 0:
            break
        time.sleep(0.2)
    assert sum(dropped) > 0, "no connection was dropped: the fault did not happen"
    assert backlog(engine).depth == backlog(engine).in_flight == backlog(engine).dead == 0
    assert stripe_names(emulator) == catalog_names(engine)
    admin.dispose()
