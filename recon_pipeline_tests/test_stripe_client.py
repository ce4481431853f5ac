"""The one Stripe client wrapper: rate limits, retries, idempotency keys, secrets kept out."""

from __future__ import annotations

import logging
import time

import httpx
import pytest
import stripe

from recon_pipeline.stripe_api import (
    RateLimiter,
    RetryPolicy,
    StripeGateway,
    endpoint_key,
    idempotency_key,
    should_retry,
)

FAST = RetryPolicy(max_attempts=8, base_delay=0.05, max_delay=0.5)


def gateway(emulator, **kwargs) -> StripeGateway:
    options = {"global_rate": None, "endpoint_rate": None, "retry": FAST, **kwargs}
    return StripeGateway(api_key="sk_test_client_secret_4242", api_base=emulator.url, **options)


def test_the_limiter_holds_its_rate_after_the_burst():
    limiter = RateLimiter(global_rate=20, endpoint_rate=None)
    started = time.monotonic()
    for _ in range(30):
        limiter.acquire("GET /v1/products")
    elapsed = time.monotonic() - started
    # 10 (half a second's worth) go at once, 20 more at 20/s take 1 s.
    assert 0.95 <= elapsed <= 1.4


def test_endpoint_keys_are_method_and_path_template():
    assert endpoint_key("get", "/v1/products/prod_123") == "GET /v1/products/{id}"
    assert endpoint_key("post", "/v1/prices") == "POST /v1/prices"
    assert endpoint_key("GET", "/v1/products?limit=3") == "GET /v1/products"


def test_idempotency_keys_are_deterministic_and_ignore_parameter_order():
    a = idempotency_key("POST /v1/products", "sku_1", {"name": "A", "metadata": {"x": "1", "y": "2"}})
    b = idempotency_key("POST /v1/products", "sku_1", {"metadata": {"y": "2", "x": "1"}, "name": "A"})
    c = idempotency_key("POST /v1/products", "sku_1", {"name": "B", "metadata": {"x": "1", "y": "2"}})
    assert a == b != c and a.startswith("recon-")


def test_429s_are_retried_until_the_request_succeeds(emulator):
    emulator.faults.update({"endpoint_rate_limit": 3})
    client = gateway(emulator, retry=RetryPolicy(max_attempts=20, base_delay=0.05, max_delay=0.5))  # patient: full jitter can retry too soon several times
    for _ in range(12):  # four seconds' worth: some are over, however slow the machine
        client.request("get", "/v1/products", {"limit": 1})
    assert client.stats["rate_limited"] >= 1 and client.stats["retries"] >= 1


def test_retry_after_is_honoured_as_the_minimum_wait(emulator):
    emulator.faults.update({"endpoint_rate_limit": 1, "retry_after": 1.0})
    client = gateway(emulator)
    client.request("get", "/v1/prices")
    started = time.monotonic()
    client.request("get", "/v1/prices")
    assert time.monotonic() - started >= 1.0
    assert client.stats["retries"] >= 1


def test_the_client_limits_itself_so_the_emulator_never_answers_429(emulator):
    emulator.faults.update({"endpoint_rate_limit": 10})
    client = gateway(emulator, endpoint_rate=8)
    for _ in range(20):
        client.request("get", "/v1/products", {"limit": 1})
    assert client.stats["rate_limited"] == 0
    assert client.stats["throttle_wait_s"] > 1.0  # 12 requests beyond the burst at 8/s


def test_an_outage_is_retried_then_the_servers_error_is_raised(emulator):
    emulator.faults.update({"outage": True})
    client = gateway(emulator, retry=RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05))
    with pytest.raises(stripe.APIError) as error:
        client.request("get", "/v1/products")
    assert error.value.http_status == 503 and "emulated outage" in str(error.value)
    assert client.stats["requests"] == 3


def test_a_client_error_is_not_retried(emulator):
    client = gateway(emulator)
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.request("get", "/v1/products/missing")
    assert error.value.code == "resource_missing"
    assert client.stats["requests"] == 1


def test_stripe_should_retry_header_decides_over_the_status():
    no = stripe.APIError("x", http_status=503, headers={"Stripe-Should-Retry": "false"})
    yes = stripe.InvalidRequestError("x", param=None, http_status=400, headers={"Stripe-Should-Retry": "true"})
    assert not should_retry(no) and should_retry(yes)
    assert should_retry(stripe.RateLimitError("x", http_status=429))
    assert should_retry(stripe.APIConnectionError("refused"))
    assert not should_retry(stripe.InvalidRequestError("x", param=None, http_status=400))


def test_writes_replay_with_the_same_idempotency_key(emulator):
    client = gateway(emulator)
    client.request("post", "/v1/products", {"id": "p", "name": "P"}, idempotency_key="test-create-p")
    key = idempotency_key("POST /v1/prices", "p", {"unit_amount": 100})
    first = client.request("post", "/v1/prices", {"product": "p", "unit_amount": 100, "currency": "usd"}, idempotency_key=key)
    again = client.request("post", "/v1/prices", {"product": "p", "unit_amount": 100, "currency": "usd"}, idempotency_key=key)
    assert first["id"] == again["id"]
    assert len(list(client.list_all("/v1/prices", {"product": "p"}))) == 1


def test_the_api_key_never_appears_in_errors_logs_or_repr(emulator, caplog):
    caplog.set_level(logging.DEBUG)
    emulator.faults.update({"failure_rate": 1.0})
    client = gateway(emulator, retry=RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.02))
    with pytest.raises(stripe.APIError) as error:
        client.request("get", "/v1/products")
    secret = "sk_test_client_secret_4242"
    assert secret not in str(error.value) and secret not in repr(error.value)
    assert secret not in repr(client)
    assert secret not in caplog.text


def test_a_write_without_an_idempotency_key_is_refused_before_it_is_sent(emulator):
    client = StripeGateway("sk_test_keys", emulator.url, global_rate=None, endpoint_rate=None)
    with pytest.raises(ValueError, match="POST /v1/products without an idempotency key"):
        client.request("post", "/v1/products", {"id": "p", "name": "P"})
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["requests"] == 0  # nothing reached Stripe
    assert client.request("get", "/v1/products")["data"] == []  # reads need none
