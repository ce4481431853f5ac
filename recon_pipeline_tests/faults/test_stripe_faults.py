"""Stripe misbehaving while the outbox drains: 429 storms, 5xx, slow and dropped connections,
an outage. Each ends with drift zero, nothing lost, no duplicate object in Stripe.

Edits come in two waves (creates, then renames and price changes), each drained through the
fault; the emulator's own counters prove the fault happened.
"""

from __future__ import annotations

import threading

import httpx
import pytest
import stripe

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.changes import change_price, create_product, update_product
from recon_pipeline.policies import ConflictPolicy
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.sync.inbox import InboxApplier
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain
from recon_pipeline.sync.poller import poll_events
from recon_pipeline.sync.worker import run_worker
from recon_pipeline.testing import assert_no_duplicates, drift_rows, priced_product, wait_until

PRODUCTS = 20

# name: (emulator faults, client timeout in seconds, the emulator counter that proves it happened)
SCENARIOS = {
    "429_storm": ({"rate_limit": 10}, 30.0, ("status_counts", "429")),
    "5xx": ({"failure_rate": 0.3}, 30.0, ("status_counts", "500")),
    "slow_connections": ({"slow_rate": 0.25, "slow_ms": 1200}, 0.5, ("slow_requests", None)),
    "dropped_connections": ({"drop_rate": 0.25}, 30.0, ("dropped_connections", None)),
    "outage": ({"outage": True}, 30.0, ("status_counts", "503")),
}


def emulator_stats(emulator) -> dict:
    return httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()


def drain_until_empty(catalog: Catalog, gateway, policy: OutboxPolicy, deadline_s: float = 90.0) -> None:
    def empty() -> bool:
        drain(catalog, gateway, policy=policy, concurrency=4)
        queue = backlog(catalog.engine)
        return queue.depth == queue.in_flight == 0

    wait_until(empty, timeout=deadline_s, interval=0.1, what="the outbox to drain")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_the_outbox_drains_through_the_fault_without_loss_or_duplicates(tmp_path, emulator, scenario):
    faults, timeout_s, (counter, key) = SCENARIOS[scenario]
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    # The client believes the account allows 100 requests/s; the emulator decides what it really allows.
    gateway = StripeGateway("sk_test_faults", emulator.url, global_rate=100, endpoint_rate=100, retry=RetryPolicy(4, 0.05, 0.5), timeout=timeout_s)
    policy = OutboxPolicy(max_attempts=1000, base_delay_s=0.1, max_delay_s=1.0)

    def wave(edit) -> None:
        emulator.faults.update(faults)
        if scenario == "outage":  # Stripe comes back after 3 s
            threading.Timer(3.0, lambda: emulator.faults.update({"outage": False})).start()
        for i in range(PRODUCTS):
            edit(i)
        drain_until_empty(catalog, gateway, policy)
        emulator.faults.clear()

    wave(lambda i: create_product(catalog, *priced_product(f"sku_{i:03d}", f"P{i}", 100 + i)))

    def second(i: int) -> None:
        update_product(catalog, f"sku_{i:03d}", name=f"P{i} renamed", metadata={"wave": "2"})
        if i % 2:
            change_price(catalog, f"sku_{i:03d}:default", unit_amount=500 + i)

    wave(second)

    stats = emulator_stats(emulator)
    happened = stats[counter] if key is None else stats[counter].get(key, 0)
    assert happened > 0, f"the {scenario} fault never happened: {stats}"
    assert gateway.stats["retries"] > 0
    queue = backlog(catalog.engine)
    assert queue.dead == 0 and queue.depth == queue.in_flight == 0, "nothing lost"
    assert drift_rows(catalog, emulator.url) == 0
    assert_no_duplicates(emulator.url)
    assert len([p for p in emulator.state.all("price")]) == PRODUCTS + PRODUCTS // 2, "one price per product, one more per price change"


def test_a_price_change_stripe_refuses_is_retried_and_replaces_exactly_that_price(tmp_path, emulator):
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    gateway = StripeGateway("sk_test_faults", emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(2, 0.01, 0.05))
    policy = OutboxPolicy(base_delay_s=0.01, max_delay_s=0.05)
    create_product(catalog, *priced_product("sku_1", "One", 100))
    drain_until_empty(catalog, gateway, policy)
    # Stripe refuses every write to an existing price: the replacement cannot start (its first write marks the old price).
    emulator.faults.update({"refuse_paths": ["/v1/prices/"]})
    change_price(catalog, "sku_1:default", unit_amount=200)
    first = drain(catalog, gateway, policy=policy)
    assert first.retried == 1 and drift_rows(catalog, emulator.url) == 1, "the change waits, nothing half-done"
    assert [p["unit_amount"] for p in emulator.state.all("price")] == [100]
    emulator.faults.update({"refuse_paths": []})
    drain_until_empty(catalog, gateway, policy)
    assert sorted((p["unit_amount"], p["active"], p["lookup_key"]) for p in emulator.state.all("price")) == [(100, False, None), (200, True, "sku_1:default")]
    assert drift_rows(catalog, emulator.url) == 0
    assert_no_duplicates(emulator.url)


def test_an_outage_while_applying_the_inbox_leaves_its_events_waiting_and_the_worker_running(sqlite_url, emulator):
    """Found by the soak: fetching an event's price during an outage used to kill the worker."""
    catalog = Catalog.open(sqlite_url)
    client = stripe.StripeClient("sk_test_dashboard", base_addresses={"api": emulator.url}, max_network_retries=0)
    client.v1.products.create(params={"id": "sku_1", "name": "Made in the dashboard", "default_price_data": {"unit_amount": 900, "currency": "usd"}})
    api = StripeGateway("sk_test_worker", emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(2, 0.01, 0.02))
    poll_events(catalog.engine, api, None)
    applier = InboxApplier(catalog, ConflictPolicy.STRIPE_WINS, api)
    emulator.faults.update({"outage": True})
    said: list[str] = []
    totals = run_worker(catalog, api, applier, name="w1", once=True, say=said.append, max_backoff_s=0.1)
    assert totals.stripe_errors == 1 and any("events wait for the next pass" in line for line in said)
    assert catalog.rows().empty  # nothing half-applied
    emulator.faults.update({"outage": False})
    result = applier.apply_pending()
    assert (result.waiting, result.stripe_error) == (0, None) and result.applied >= 1
    assert catalog.rows().loc[0, "name"] == "Made in the dashboard"
    assert catalog.price_rows().empty  # its price has no lookup key: unmanaged, not adopted (RECON_PRICE_ORPHAN_POLICY=report)
