"""Continuous sync both ways: outbox to Stripe, Stripe events through the inbox to the catalog."""

from __future__ import annotations

import threading
import time
from collections import Counter

import httpx
import pytest
import stripe
from sqlalchemy import func, select

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.changes import change_price, create_product, update_product
from recon_pipeline.catalog.schema import audit, dead_letter, inbox, outbox, sync_ledger
from recon_pipeline.emulator import ServerThread
from recon_pipeline.emulator.server import free_port
from recon_pipeline.policies import ConflictPolicy
from recon_pipeline.repair import converge
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.sync.inbox import EventSource, InboxApplier, store_event
from recon_pipeline.sync.outbox import OutboxPolicy, backlog, drain, ready_count
from recon_pipeline.sync.poller import poll_events
from recon_pipeline.sync.webhooks import create_webhook_app
from recon_pipeline.testing import assert_no_duplicates, drift_rows, event, priced_product, product_obj, signed, wait_until


def gateway(emulator, attempts: int = 4) -> StripeGateway:
    return StripeGateway(api_key="sk_test_sync", api_base=emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(attempts, 0.02, 0.1))


def stripe_client(emulator) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_dashboard", base_addresses={"api": emulator.url}, max_network_retries=0)


def rows(engine, table, *columns):
    with engine.connect() as conn:
        return conn.execute(select(*columns) if columns else select(table)).all()


# -- outbox ------------------------------------------------------------------------------


def test_a_catalog_change_and_its_outbox_row_commit_together_and_reach_stripe(catalog, emulator):
    create_product(catalog, *priced_product("sku_1", "Pro", 1500, "usd", "month"))
    assert backlog(catalog.engine).depth == 1
    result = drain(catalog, gateway(emulator))
    assert (result.pushed_products, result.delivered_rows) == (1, 1)
    product = stripe_client(emulator).v1.products.retrieve("sku_1", params={"expand": ["default_price"]})
    assert product.name == "Pro" and product.default_price.unit_amount == 1500
    assert backlog(catalog.engine).depth == 0


def test_several_changes_to_one_product_coalesce_into_one_push_of_the_latest_state(catalog, emulator):
    create_product(catalog, *priced_product("sku_1", "v1", 100))
    update_product(catalog, "sku_1", name="v2")
    update_product(catalog, "sku_1", name="v3", metadata={"tier": "gold"})
    change_price(catalog, "sku_1:default", unit_amount=200)
    result = drain(catalog, gateway(emulator))
    assert (result.pushed_products, result.delivered_rows) == (1, 4)
    product = stripe_client(emulator).v1.products.retrieve("sku_1", params={"expand": ["default_price"]})
    assert (product.name, product.metadata.to_dict(), product.default_price.unit_amount) == ("v3", {"tier": "gold"}, 200)
    # One product create, one price create, one default_price: the states in between never went out.
    writes = rows(catalog.engine, sync_ledger, sync_ledger.c.method, sync_ledger.c.path)
    assert Counter(w.path for w in writes)["/v1/prices"] == 1


def test_a_push_that_fails_backs_off_and_goes_to_dead_letter_after_its_attempts(catalog, emulator):
    create_product(catalog, CatalogProduct(id="sku_1", name="Pro"))
    emulator.faults.update({"outage": True})
    policy = OutboxPolicy(max_attempts=2, base_delay_s=0.05, max_delay_s=0.1)
    first = drain(catalog, gateway(emulator, attempts=2), policy=policy)
    assert first.retried == 1 and backlog(catalog.engine).depth == 1
    [row] = rows(catalog.engine, outbox, outbox.c.attempts, outbox.c.next_attempt_at, outbox.c.last_error)
    assert row.attempts == 1 and "503" in row.last_error
    # Once its backoff has passed, the change is tried again and, out of attempts, dead-lettered.
    wait_until(lambda: ready_count(catalog.engine), timeout=5, what="the change's backoff to pass")
    second = drain(catalog, gateway(emulator, attempts=2), policy=policy)
    assert second.dead == 1
    assert [r.source for r in rows(catalog.engine, dead_letter, dead_letter.c.source)] == ["outbox"]


@pytest.mark.postgres
def test_two_workers_on_postgresql_never_push_the_same_product(postgres_url, emulator):
    catalog = Catalog.open(postgres_url)
    engine = catalog.engine
    for i in range(60):
        create_product(catalog, *priced_product(f"sku_{i:03d}", f"P{i}", 100 + i))
        update_product(catalog, f"sku_{i:03d}", name=f"P{i} v2")
    emulator.faults.update({"latency_ms": 10})
    results = []

    def work(name: str) -> None:
        results.append(drain(Catalog.open(postgres_url), gateway(emulator), worker=name, concurrency=4, batch_size=5))

    workers = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert sum(r.delivered_rows for r in results) == 120 and all(r.pushed_products for r in results)
    with engine.connect() as conn:
        creates = conn.execute(
            select(sync_ledger.c.product_id, func.count()).where(sync_ledger.c.path == "/v1/products").group_by(sync_ledger.c.product_id)
        ).all()
        claimants = conn.execute(select(outbox.c.product_id, func.count(func.distinct(outbox.c.claimed_by))).group_by(outbox.c.product_id)).all()
    assert all(count == 1 for _, count in creates) and len(creates) == 60
    assert all(count == 1 for _, count in claimants)
    products = [p.id for p in stripe_client(emulator).v1.products.list(params={"limit": 100}).auto_paging_iter()]
    assert len(products) == len(set(products)) == 60


def test_an_outage_with_changes_continuing_loses_nothing_and_delivers_each_once(catalog, emulator):
    api = gateway(emulator, attempts=2)
    policy = OutboxPolicy(max_attempts=50, base_delay_s=0.05, max_delay_s=0.2)
    for i in range(10):
        create_product(catalog, CatalogProduct(id=f"sku_{i}", name=f"P{i}"))
    drain(catalog, api, policy=policy)
    emulator.faults.update({"outage": True})
    edits = 40
    for i in range(edits):  # edits keep coming while Stripe is down
        update_product(catalog, f"sku_{i % 10}", name=f"P{i % 10} edit {i}")
        drain(catalog, api, policy=policy)
    assert backlog(catalog.engine).depth > 0
    emulator.faults.update({"outage": False})

    def drained() -> bool:
        drain(catalog, api, policy=policy)
        return backlog(catalog.engine).depth == 0

    wait_until(drained, timeout=20, what="the outbox to drain after the outage")
    assert backlog(catalog.engine).dead == 0
    names = catalog.rows().set_index("id")["name"].to_dict()
    remote = {p.id: p.name for p in stripe_client(emulator).v1.products.list(params={"limit": 100}).auto_paging_iter()}
    assert remote == names  # every last edit arrived, nothing lost
    with catalog.engine.connect() as conn:
        statuses = Counter(r.status for r in conn.execute(select(outbox.c.status)))
    assert statuses == {"done": 10 + edits}


# -- webhooks, poller, apply -------------------------------------------------------------


def test_webhook_receiver_stores_signed_events_once(receiver):
    engine, server = receiver
    body, headers = signed(event("evt_1", "product.updated", product_obj("sku_1", "A", 1)))
    first = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
    again = httpx.post(f"{server.url}/webhooks/stripe", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
    assert len(rows(engine, inbox)) == 1


def test_the_emulator_delivers_signed_events_to_the_receiver(sqlite_url, emulator):
    engine = Catalog.open(sqlite_url).engine
    client = stripe_client(emulator)
    # Stripe makes the signing secret when the endpoint is created: register first, then
    # start the receiver on the registered port with that secret.
    port = free_port("127.0.0.1")
    endpoint = client.v1.webhook_endpoints.create(
        params={"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["product.created", "product.updated"]}
    )
    assert endpoint.secret.startswith("whsec_")
    with ServerThread(create_webhook_app(engine, endpoint.secret), port=port):
        client.v1.products.create(params={"id": "sku_w", "name": "Via webhook"})
        client.v1.products.update("sku_w", params={"name": "Renamed in Stripe"})
        client.v1.prices.create(params={"product": "sku_w", "unit_amount": 100, "currency": "usd"})  # not subscribed
        wait_until(lambda: len(rows(engine, inbox)) >= 2, timeout=10, what="two events delivered")
    assert sorted(r.type for r in rows(engine, inbox)) == ["product.created", "product.updated"]


def test_webhook_delivery_is_retried_until_the_receiver_is_up(sqlite_url, emulator):
    engine = Catalog.open(sqlite_url).engine
    client = stripe_client(emulator)
    port = free_port("127.0.0.1")
    endpoint = client.v1.webhook_endpoints.create(params={"url": f"http://127.0.0.1:{port}/webhooks/stripe", "enabled_events": ["*"]})
    client.v1.products.create(params={"id": "sku_late", "name": "Sent while the receiver is down"})

    def failed_attempts() -> int:
        return httpx.get(f"{emulator.url}/_emulator/stats").json()["webhooks"]["failed_attempts"]

    wait_until(failed_attempts, timeout=10, what="a delivery attempt to fail: nothing listens yet")
    with ServerThread(create_webhook_app(engine, endpoint.secret), port=port):
        wait_until(lambda: rows(engine, inbox), timeout=10, what="the retried delivery")
    assert [r.object_id for r in rows(engine, inbox)] == ["sku_late"]


def test_the_poller_fills_the_inbox_from_a_durable_cursor(catalog, emulator):
    client = stripe_client(emulator)
    client.v1.products.create(params={"id": "a", "name": "A"})
    client.v1.products.update("a", params={"name": "A2"})
    first = poll_events(catalog.engine, gateway(emulator), None)
    assert (first.seen, first.stored) == (2, 2)
    client.v1.products.update("a", params={"name": "A3"})
    second = poll_events(catalog.engine, gateway(emulator), first.cursor)
    assert (second.seen, second.stored) == (1, 1)
    again = poll_events(catalog.engine, gateway(emulator), second.cursor)
    assert again.seen == 0
    assert len(rows(catalog.engine, inbox)) == 3


def seed_catalog(catalog: Catalog, **fields) -> None:
    upsert_products(catalog.engine, [CatalogProduct(id="sku_1", name="Local name", **fields)])


def stripe_edit(catalog: Catalog, name: str, event_id: str, updated: int, key: str | None = None) -> None:
    renamed = event(event_id, "product.updated", product_obj("sku_1", name, updated), created=updated, key=key)
    renamed["data"]["previous_attributes"] = {"name": "whatever it was"}
    store_event(catalog.engine, renamed, EventSource.WEBHOOK)


@pytest.mark.parametrize(
    "policy, catalog_name, outbox_rows, decision",
    [
        (ConflictPolicy.LOCAL_WINS, "Local name", 1, "conflict_local_wins"),
        (ConflictPolicy.STRIPE_WINS, "Stripe name", 0, "conflict_stripe_wins"),
    ],
)
def test_a_stripe_edit_of_an_owned_field_is_decided_by_policy_and_audited(catalog, policy, catalog_name, outbox_rows, decision):
    seed_catalog(catalog)
    stripe_edit(catalog, "Stripe name", "evt_1", int(time.time()))
    result = InboxApplier(catalog, policy).apply_pending()
    assert (result.applied, result.conflicts) == (1, 1)
    assert catalog.rows().loc[0, "name"] == catalog_name
    assert len(rows(catalog.engine, outbox)) == outbox_rows  # stripe_wins must not bounce the change back
    [entry] = rows(catalog.engine, audit)
    assert (entry.product_id, entry.field, entry.before, entry.after, entry.decision, entry.event_id) == (
        "sku_1", "name", "Local name", "Stripe name", decision, "evt_1",
    )
    assert policy.value in entry.reason


def test_latest_wins_compares_the_stripe_edit_with_the_catalog_edit(catalog):
    seed_catalog(catalog)  # updated_at: now
    now = int(time.time())
    stripe_edit(catalog, "Older Stripe name", "evt_old", now - 3600)
    InboxApplier(catalog, ConflictPolicy.LATEST_WINS).apply_pending()
    assert catalog.rows().loc[0, "name"] == "Local name"
    stripe_edit(catalog, "Newer Stripe name", "evt_new", now + 60)
    InboxApplier(catalog, ConflictPolicy.LATEST_WINS).apply_pending()
    assert catalog.rows().loc[0, "name"] == "Newer Stripe name"
    assert [r.decision for r in rows(catalog.engine, audit, audit.c.decision)] == ["conflict_local_wins", "conflict_stripe_wins"]


def test_duplicate_out_of_order_and_replayed_events_change_nothing(catalog):
    seed_catalog(catalog)
    now = int(time.time())
    stripe_edit(catalog, "Second", "evt_2", now + 20)
    applier = InboxApplier(catalog, ConflictPolicy.STRIPE_WINS)
    applier.apply_pending()
    stripe_edit(catalog, "First (arrives late)", "evt_1", now + 10)
    assert not store_event(catalog.engine, event("evt_2", "product.updated", product_obj("sku_1", "Second", now + 20)), EventSource.POLLER)
    result = applier.apply_pending()
    assert (result.stale, result.applied) == (1, 0)
    assert catalog.rows().loc[0, "name"] == "Second"
    assert Counter(r.status for r in rows(catalog.engine, inbox, inbox.c.status)) == {"applied": 1, "stale": 1}


def test_our_own_writes_coming_back_are_echoes_not_changes(catalog, emulator):
    create_product(catalog, CatalogProduct(id="sku_1", name="Pushed"))
    drain(catalog, gateway(emulator))
    poll_events(catalog.engine, gateway(emulator), None)
    result = InboxApplier(catalog, ConflictPolicy.STRIPE_WINS, gateway(emulator)).apply_pending()
    assert result.echoes >= 1 and result.conflicts == 0
    # The trail holds the catalog's own edit, and nothing about its echo.
    assert [(r.actor, r.decision) for r in rows(catalog.engine, audit)] == [("catalog", "edited")] and backlog(catalog.engine).depth == 0


def test_a_stripe_dashboard_edit_flows_into_the_catalog_end_to_end(catalog, emulator):
    create_product(catalog, *priced_product("sku_1", "Pushed", 500))
    api = gateway(emulator)
    drain(catalog, api)
    client = stripe_client(emulator)
    client.v1.products.update("sku_1", params={"description": "Written in the dashboard"})
    cursor = poll_events(catalog.engine, api, None).cursor
    result = InboxApplier(catalog, ConflictPolicy.STRIPE_WINS, api).apply_pending()
    assert result.conflicts == 1
    assert catalog.rows().loc[0, "description"] == "Written in the dashboard"
    assert backlog(catalog.engine).depth == 0  # applied from Stripe: nothing to push back
    assert poll_events(catalog.engine, api, cursor).seen == 0


def test_local_wins_reverts_a_stripe_edit_and_the_revert_does_not_bounce(catalog, emulator):
    create_product(catalog, CatalogProduct(id="sku_1", name="Catalog name"))
    api = gateway(emulator)
    drain(catalog, api)
    stripe_client(emulator).v1.products.update("sku_1", params={"name": "Dashboard name"})
    applier = InboxApplier(catalog, ConflictPolicy.LOCAL_WINS, api)
    cursor = poll_events(catalog.engine, api, None).cursor
    assert applier.apply_pending().conflicts == 1
    assert drain(catalog, api).pushed_products == 1  # the revert
    assert stripe_client(emulator).v1.products.retrieve("sku_1").name == "Catalog name"
    # The revert's own event comes back: an echo, so no new outbox row, no ping-pong.
    poll_events(catalog.engine, api, cursor)
    result = applier.apply_pending()
    assert result.echoes >= 1 and result.conflicts == 0
    assert backlog(catalog.engine).depth == 0
    assert catalog.rows().loc[0, "name"] == "Catalog name"


def test_an_update_event_only_decides_the_fields_it_changed(catalog):
    """A description edit in Stripe carries the product's older name: that name is not a conflict."""
    seed_catalog(catalog)  # the catalog renamed the product to "Local name", not yet pushed
    described = event("evt_d", "product.updated", product_obj("sku_1", "Old name", int(time.time()), description="From the dashboard"))
    described["data"]["previous_attributes"] = {"description": None}
    store_event(catalog.engine, described, EventSource.WEBHOOK)
    InboxApplier(catalog, ConflictPolicy.STRIPE_WINS).apply_pending()
    row = catalog.rows().iloc[0]
    assert (row["name"], row["description"]) == ("Local name", "From the dashboard")
    assert [r.field for r in rows(catalog.engine, audit, audit.c.field)] == ["description"]


# -- idempotency keys over a changed Stripe state (found by the soak) -------------------------


def test_putting_back_a_value_a_dashboard_edit_overwrote_is_a_new_write_not_a_replay(catalog, emulator):
    """The same catalog version written over a different Stripe state must reach Stripe.

    Keyed on the catalog version alone, the revert of a dashboard edit re-sent the earlier
    push's key with the same body: Stripe (and the emulator) replayed the old answer and wrote
    nothing, so the dashboard's value stayed with no error anywhere.
    """
    create_product(catalog, *priced_product("sku_1", "First", 500))
    api = gateway(emulator)
    drain(catalog, api)
    update_product(catalog, "sku_1", name="Catalog name")
    drain(catalog, api)  # an update, keyed on this catalog version
    client = stripe_client(emulator)
    client.v1.products.update("sku_1", params={"name": "Dashboard name"})
    poll_events(catalog.engine, api, None)
    assert InboxApplier(catalog, ConflictPolicy.LOCAL_WINS, api).apply_pending().conflicts == 1
    assert drain(catalog, api).pushed_products == 1  # the revert: same version, same body
    assert client.v1.products.retrieve("sku_1").name == "Catalog name"
    assert drift_rows(catalog, emulator.url) == 0


def test_the_repair_puts_back_a_dashboard_edit_of_a_field_and_a_price_and_leaves_the_dashboards_price_alone(catalog, emulator):
    create_product(catalog, *priced_product("sku_1", "First", 500))
    api = gateway(emulator)
    drain(catalog, api)
    update_product(catalog, "sku_1", name="Catalog name")
    change_price(catalog, "sku_1:default", unit_amount=700)
    drain(catalog, api)
    client = stripe_client(emulator)
    client.v1.products.update("sku_1", params={"name": "Dashboard name"})
    # A dashboard price switch: a new default price (no lookup key), the catalog's one archived.
    old = client.v1.products.retrieve("sku_1").default_price
    new = client.v1.prices.create(params={"product": "sku_1", "unit_amount": 900, "currency": "usd"})
    client.v1.products.update("sku_1", params={"default_price": new.id})
    client.v1.prices.update(old, params={"active": False})

    converged = converge(catalog, api)
    assert converged.errors == {} and converged.remaining.empty
    assert {(o.action, o.status) for o in converged.result.outcomes} == {
        ("update_product", "applied"),
        ("update_price", "applied"),  # the catalog's price, reactivated in place
        ("set_default_price", "applied"),
        ("report_price_orphan", "reported"),  # the dashboard's price is not the catalog's: left alone
    }
    product = client.v1.products.retrieve("sku_1", params={"expand": ["default_price"]})
    assert (product.name, product.default_price.unit_amount, product.default_price.lookup_key) == ("Catalog name", 700, "sku_1:default")
    assert client.v1.prices.retrieve(new.id).active
    assert drift_rows(catalog, emulator.url) == 1  # the unmanaged price, reported
    assert_no_duplicates(emulator.url, unmanaged=[new.id])
