"""The emulator answers in Stripe's shapes: every operation we use, validated against the
official OpenAPI description, with today's field set from Stripe's current fixtures."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from recon_pipeline_tests.openapi_validation import FIXTURES, SPEC, fixture_keys, fixtures, spec, validate_object, validate_response

AUTH = {"Authorization": "Bearer sk_test_spec"}


@pytest.fixture
def api(emulator):
    with httpx.Client(base_url=emulator.url, headers=AUTH, timeout=10) as client:
        yield client


def call(api: httpx.Client, method: str, template: str, path: str | None = None, expect: int = 200, **kwargs) -> dict:
    response = api.request(method, path or template, **kwargs)
    assert response.status_code == expect, response.text
    body = response.json()
    validate_response(method, template, response.status_code, body)
    assert response.headers["request-id"].startswith("req_")
    return body


def test_the_vendored_description_is_stripes_own_file_of_todays_api():
    digests = {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in (SPEC, FIXTURES)}
    assert digests == {
        "spec3-2026-08-26-products-prices.json": "ace3005289e41fe32aca8830692d6aa71fa9af5058feaad58e42f4bcf3059ed0",
        "fixtures3.json": "41486e14a5b930447f53ecc4e71e34e3184462ba3d18212a39d4a40f70eaba44",
    }
    assert spec()["info"]["version"] == "2026-08-26.dahlia"


def test_validator_accepts_stripes_own_fixtures_and_rejects_a_broken_one():
    for name in ("product", "price"):
        validate_object(name, fixtures()[name])
    broken = {**fixtures()["product"], "active": "yes"}
    with pytest.raises(AssertionError, match="active"):
        validate_object("product", broken)


def test_product_and_price_operations_match_the_spec_and_todays_field_set(api):
    pro = {"id": "sku_1", "name": "Pro", "metadata[tier]": "2"}
    price = {"default_price_data[currency]": "usd", "default_price_data[unit_amount]": "1500", "default_price_data[recurring][interval]": "month"}
    product = call(api, "POST", "/v1/products", data={**pro, **price})
    assert set(product) == fixture_keys("product")
    call(api, "GET", "/v1/products/{id}", "/v1/products/sku_1")
    expanded = call(api, "GET", "/v1/products/{id}", "/v1/products/sku_1", params={"expand[]": "default_price"})
    assert expanded["default_price"]["unit_amount"] == 1500
    call(api, "POST", "/v1/products/{id}", "/v1/products/sku_1", data={"name": "Pro 2", "description": "", "active": "false"})
    listing = call(api, "GET", "/v1/products", params={"limit": 5, "expand[]": "data.default_price"})
    assert listing["url"] == "/v1/products" and listing["data"][0]["default_price"]["object"] == "price"

    price = call(api, "POST", "/v1/prices", data={"product": "sku_1", "unit_amount": "900", "currency": "eur", "lookup_key": "sku_1:default", "transfer_lookup_key": "true"})
    assert set(price) == fixture_keys("price")
    assert set(expanded["default_price"]["recurring"]) == set(fixtures()["price"]["recurring"])
    call(api, "GET", "/v1/prices/{price}", f"/v1/prices/{price['id']}")
    call(api, "POST", "/v1/prices/{price}", f"/v1/prices/{price['id']}", data={"metadata[a]": "b"})
    call(api, "GET", "/v1/prices", params={"product": "sku_1", "active": "true", "lookup_keys[]": "sku_1:default"})

    call(api, "POST", "/v1/products", data={"id": "sku_bare", "name": "No price"})
    deleted = call(api, "DELETE", "/v1/products/{id}", "/v1/products/sku_bare")
    assert deleted == {"id": "sku_bare", "object": "product", "deleted": True}
    refused = call(api, "DELETE", "/v1/products/{id}", "/v1/products/sku_1", expect=400)
    assert "cannot be deleted" in refused["error"]["message"]


def test_events_match_the_spec_and_carry_previous_attributes(api):
    call(api, "POST", "/v1/products", data={"id": "sku_e", "name": "Before"})
    call(api, "POST", "/v1/products/{id}", "/v1/products/sku_e", data={"name": "After"})
    events = call(api, "GET", "/v1/events", params={"type": "product.updated"})
    [event] = events["data"]
    assert set(event) == fixture_keys("event")
    assert event["data"]["previous_attributes"] == {"name": "Before"} and event["data"]["object"]["name"] == "After"
    call(api, "GET", "/v1/events/{id}", f"/v1/events/{event['id']}")


@pytest.mark.parametrize(
    "method, template, path, kwargs, status, code",
    [
        ("GET", "/v1/products/{id}", "/v1/products/nope", {}, 404, "resource_missing"),
        ("POST", "/v1/products", None, {"data": {"description": "no name"}}, 400, "parameter_missing"),
        ("POST", "/v1/products", None, {"data": {"name": "x", "colour": "red"}}, 400, "parameter_unknown"),
        ("GET", "/v1/products", None, {"params": {"limit": "500"}}, 400, "parameter_invalid_integer"),
        ("POST", "/v1/prices", None, {"data": {"product": "nope", "unit_amount": "1", "currency": "usd"}}, 404, "resource_missing"),
    ],
)
def test_errors_have_stripes_shape_status_and_code(api, method, template, path, kwargs, status, code):
    body = call(api, method, template, path, expect=status, **kwargs)
    assert body["error"]["code"] == code and body["error"]["type"] == "invalid_request_error"


def test_price_amount_is_immutable(api):
    call(api, "POST", "/v1/products", data={"id": "sku_p", "name": "P"})
    price = call(api, "POST", "/v1/prices", data={"product": "sku_p", "unit_amount": "100", "currency": "usd"})
    body = call(api, "POST", "/v1/prices/{price}", f"/v1/prices/{price['id']}", expect=400, data={"unit_amount": "200"})
    assert body["error"]["code"] == "parameter_unknown" and body["error"]["param"] == "unit_amount"


def test_auth_idempotency_and_fault_errors_have_stripes_shape(emulator, api):
    no_key = httpx.get(f"{emulator.url}/v1/products")
    assert no_key.status_code == 401
    validate_response("GET", "/v1/products", 401, no_key.json())
    wrong = httpx.get(f"{emulator.url}/v1/products", headers={"Authorization": "Bearer sk_live_secretvalue1234"})
    assert wrong.status_code == 401 and "secretvalue" not in wrong.text

    headers = {"Idempotency-Key": "same-key"}
    call(api, "POST", "/v1/products", data={"id": "sku_i", "name": "I"}, headers=headers)
    clash = call(api, "POST", "/v1/products", expect=400, data={"id": "sku_i", "name": "Other"}, headers=headers)
    assert clash["error"]["type"] == "idempotency_error"

    emulator.faults.update({"endpoint_rate_limit": 1})
    api.get("/v1/prices")
    limited = call(api, "GET", "/v1/prices", expect=429)
    assert limited["error"]["code"] == "rate_limit"
    emulator.faults.update({"endpoint_rate_limit": None, "failure_rate": 1.0})
    assert call(api, "GET", "/v1/prices", expect=500)["error"]["type"] == "api_error"
    emulator.faults.update({"failure_rate": 0.0, "outage": True})
    outage = api.get("/v1/prices")
    assert outage.status_code == 503 and outage.headers["stripe-should-retry"] == "true"
    validate_response("GET", "/v1/prices", 503, outage.json())
