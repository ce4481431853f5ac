"""The emulator driven by the official `stripe` SDK, as our pipeline and users drive Stripe."""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import httpx
import pytest
import stripe

from recon_pipeline.emulator import EmulatorServer, Faults
from recon_pipeline.testing import wait_until


def sdk(url: str, key: str = "sk_test_sdk") -> stripe.StripeClient:
    return stripe.StripeClient(key, base_addresses={"api": url}, max_network_retries=0)


def load(emulator, products: list[dict]) -> None:
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": products}, timeout=30).raise_for_status()


@pytest.fixture
def account(emulator):
    """260 products: 200 in one second, then 60 more spread over months, with gaps."""
    now = int(time.time())
    products = [{"id": f"same_{i:03d}", "name": f"Same second {i}", "created": now - 86400} for i in range(200)]
    products += [{"id": f"spread_{i:03d}", "name": f"Spread {i}", "created": now - 86400 * (30 * (i % 6) + 2) - i} for i in range(60)]
    load(emulator, products)
    return emulator, {p["id"] for p in products}


def test_pagination_has_no_gaps_or_duplicates_over_260_products(account):
    emulator, ids = account
    client = sdk(emulator.url)
    forward = [p.id for p in client.v1.products.list(params={"limit": 7}).auto_paging_iter()]
    assert len(forward) == len(set(forward)) == 260 and set(forward) == ids
    created = [client.v1.products.retrieve(i).created for i in forward[::37]]
    assert created == sorted(created, reverse=True), "newest first"

    # Backwards with ending_before from the oldest product reproduces the same order.
    backward: list[str] = []
    cursor = forward[-1]
    while True:
        page = client.v1.products.list(params={"limit": 9, "ending_before": cursor})
        backward = [p.id for p in page.data] + backward
        if not page.has_more:
            break
        cursor = page.data[0].id
    assert [*backward, forward[-1]] == forward


def test_created_windows_split_the_list_without_overlap(account):
    emulator, ids = account
    client = sdk(emulator.url)
    now = int(time.time())
    edges = [0, now - 86400 * 100, now - 86400, now + 1]  # the 200 same-second products sit on an edge
    seen: list[str] = []
    for lo, hi in itertools.pairwise(edges):
        seen += [p.id for p in client.v1.products.list(params={"limit": 100, "created": {"gte": lo, "lt": hi}}).auto_paging_iter()]
    assert len(seen) == len(set(seen)) == 260 and set(seen) == ids


def test_ids_and_active_filters_and_expanded_default_price(emulator):
    client = sdk(emulator.url)
    client.v1.products.create(params={"id": "a", "name": "A", "default_price_data": {"currency": "usd", "unit_amount": 500}})
    client.v1.products.create(params={"id": "b", "name": "B", "active": False})
    client.v1.products.create(params={"id": "c", "name": "C"})
    assert [p.id for p in client.v1.products.list(params={"ids": ["a", "b"]}).data] == ["b", "a"]
    assert [p.id for p in client.v1.products.list(params={"active": False}).data] == ["b"]
    [a] = client.v1.products.list(params={"ids": ["a"], "expand": ["data.default_price"]}).data
    assert a.default_price.unit_amount == 500 and a.default_price.product == "a"


def test_idempotent_replay_returns_the_same_object_and_says_so(emulator):
    client = sdk(emulator.url)
    client.v1.products.create(params={"id": "p", "name": "P"})
    first = client.v1.prices.create(params={"product": "p", "unit_amount": 100, "currency": "usd"}, options={"idempotency_key": "k-1"})
    again = client.v1.prices.create(params={"product": "p", "unit_amount": 100, "currency": "usd"}, options={"idempotency_key": "k-1"})
    assert again.id == first.id
    assert len(client.v1.prices.list(params={"product": "p"}).data) == 1
    raw = httpx.post(f"{emulator.url}/v1/prices", data={"product": "p", "unit_amount": "100", "currency": "usd"}, headers={"Authorization": "Bearer sk_test_x", "Idempotency-Key": "k-1"})
    assert raw.headers["idempotent-replayed"] == "true" and raw.json()["id"] == first.id
    with pytest.raises(stripe.IdempotencyError):
        client.v1.prices.create(params={"product": "p", "unit_amount": 999, "currency": "usd"}, options={"idempotency_key": "k-1"})


def test_prices_are_immutable_and_lookup_keys_transfer(emulator):
    client = sdk(emulator.url)
    client.v1.products.create(params={"id": "p", "name": "P"})
    old = client.v1.prices.create(params={"product": "p", "unit_amount": 100, "currency": "usd", "lookup_key": "p:default"})
    with pytest.raises(stripe.InvalidRequestError, match="unit_amount"):
        client.v1.prices.update(old.id, params={"unit_amount": 200})  # not a parameter of a price update
    with pytest.raises(stripe.InvalidRequestError, match="lookup key"):
        client.v1.prices.create(params={"product": "p", "unit_amount": 200, "currency": "usd", "lookup_key": "p:default"})
    new = client.v1.prices.create(params={"product": "p", "unit_amount": 200, "currency": "usd", "lookup_key": "p:default", "transfer_lookup_key": True})
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    assert [p.id for p in client.v1.prices.list(params={"lookup_keys": ["p:default"]}).data] == [new.id]
    client.v1.products.update("p", params={"default_price": new.id})
    with pytest.raises(stripe.InvalidRequestError, match="default price"):
        client.v1.prices.update(new.id, params={"active": False})
    assert client.v1.prices.update(old.id, params={"active": False}).active is False


def test_metadata_key_with_empty_value_is_removed_and_events_record_previous_attributes(emulator):
    client = sdk(emulator.url)
    client.v1.products.create(params={"id": "m", "name": "M", "metadata": {"keep": "1", "drop": "2"}})
    updated = client.v1.products.update("m", params={"metadata": {"drop": ""}, "name": "M2"})
    assert updated.metadata.to_dict() == {"keep": "1"}
    [event] = client.v1.events.list(params={"type": "product.updated"}).data
    assert event.data.previous_attributes.to_dict() == {"metadata": {"drop": "2"}, "name": "M"}  # only the keys that changed
    types = [e.type for e in client.v1.events.list(params={"types": ["product.created", "product.updated"]}).auto_paging_iter()]
    assert types == ["product.updated", "product.created"]


def test_auth_and_rate_limit_errors_are_the_sdks_own_errors(emulator):
    with pytest.raises(stripe.AuthenticationError):
        sdk(emulator.url, key="sk_live_wrong_mode").v1.products.list()
    emulator.faults.update({"rate_limit": 2})
    client = sdk(emulator.url)
    with pytest.raises(stripe.RateLimitError) as error:
        for _ in range(10):
            client.v1.products.list()
    # The SDK keeps the body but does not copy `code` onto RateLimitError.
    assert error.value.json_body["error"]["code"] == "rate_limit" and error.value.http_status == 429


def test_the_endpoint_limit_counts_each_endpoint_on_its_own(emulator):
    emulator.faults.update({"endpoint_rate_limit": 3})
    client = sdk(emulator.url)
    statuses = []
    for _ in range(5):
        try:
            client.v1.products.list()
            statuses.append(200)
        except stripe.RateLimitError:
            statuses.append(429)
    assert statuses.count(429) >= 1
    for _ in range(3):
        client.v1.prices.list()  # another endpoint: its own budget


def test_state_file_survives_a_restart(tmp_path: Path):
    state = str(tmp_path / "stripe.db")
    with EmulatorServer(state_path=state) as first:
        client = sdk(first.url)
        client.v1.products.create(params={"id": "kept", "name": "Kept", "default_price_data": {"currency": "usd", "unit_amount": 700}}, options={"idempotency_key": "create-kept"})
    with EmulatorServer(state_path=state) as second:
        client = sdk(second.url)
        product = client.v1.products.retrieve("kept", params={"expand": ["default_price"]})
        assert isinstance(product.default_price, stripe.Price) and product.default_price.unit_amount == 700
        assert len(client.v1.events.list().data) == 2
        replay = client.v1.products.create(params={"id": "kept", "name": "Kept", "default_price_data": {"currency": "usd", "unit_amount": 700}}, options={"idempotency_key": "create-kept"})
        assert replay.id == "kept"


def test_a_dropped_connection_after_the_work_loses_only_the_answer(emulator):
    client = sdk(emulator.url)
    emulator.faults.update({"drop_rate": 1.0})
    for i in range(20):  # each drop is cut before or after the work, at random
        with pytest.raises(stripe.APIConnectionError):
            client.v1.products.create(params={"name": f"Dropped {i}"}, options={"idempotency_key": f"drop-{i}"})
    emulator.faults.update({"drop_rate": 0.0})
    created = httpx.get(f"{emulator.url}/_emulator/stats").json()["objects"]["product"]
    assert 0 < created < 20, "drops happen both before and after the work"
    # Retrying with the same keys creates each product exactly once.
    retried = {client.v1.products.create(params={"name": f"Dropped {i}"}, options={"idempotency_key": f"drop-{i}"}).id for i in range(20)}
    assert len(retried) == 20
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["objects"]["product"] == 20


def test_a_retry_while_the_first_request_still_works_gets_409_idempotency_key_in_use(emulator):
    import threading

    client = sdk(emulator.url)
    emulator.faults.update({"latency_ms": 600})
    first: list = []
    thread = threading.Thread(target=lambda: first.append(client.v1.products.create(params={"name": "Slow"}, options={"idempotency_key": "slow-1"})))
    thread.start()
    wait_until(lambda: httpx.get(f"{emulator.url}/_emulator/stats").json()["idempotency_keys_in_flight"] == 1, timeout=5, what="the first request to be in flight")
    with pytest.raises(stripe.APIError) as caught:
        client.v1.products.create(params={"name": "Slow"}, options={"idempotency_key": "slow-1"})
    thread.join()
    assert caught.value.http_status == 409
    assert caught.value.error.type == "idempotency_error" and caught.value.error.code == "idempotency_key_in_use"
    replay = client.v1.products.create(params={"name": "Slow"}, options={"idempotency_key": "slow-1"})
    assert replay.id == first[0].id and replay.last_response.headers.get("Idempotent-Replayed") == "true"


def test_clearing_the_faults_makes_the_emulator_healthy_again(emulator):
    emulator.faults.update({"outage": True, "rate_limit": 1, "drop_rate": 0.5, "slow_rate": 0.5, "refuse_paths": ["/v1/prices/"]})
    emulator.faults.clear()
    assert emulator.faults.as_dict() == Faults().as_dict()
    client = stripe.StripeClient("sk_test_clear", base_addresses={"api": emulator.url}, max_network_retries=0)
    assert [client.v1.products.create(params={"name": f"P{i}"}).name for i in range(3)] == ["P0", "P1", "P2"]
