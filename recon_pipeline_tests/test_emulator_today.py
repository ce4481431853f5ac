"""The emulator answers as Stripe's API of today (2026-08-26.dahlia) for a real product catalog.

Driven by the official `stripe` SDK over HTTP; every body the emulator answers is also
validated against the vendored spec by the `emulator` fixture. One test per rule: the
shapes of every product and price field, the price rules (tiers, currency options,
immutability, lookup keys), expansion, list filters, API versions, idempotency as Stripe
saves and expires it, and webhook endpoints.
"""

from __future__ import annotations

from decimal import Decimal

import httpx
import pytest
import stripe

from recon_pipeline.emulator.resources import API_VERSION

GRADUATED = [{"up_to": 10, "unit_amount": 500}, {"up_to": 100, "unit_amount_decimal": "412.5"}, {"up_to": "inf", "unit_amount": 300, "flat_amount": 1000}]


def sdk(url: str, **options) -> stripe.StripeClient:
    return stripe.StripeClient("sk_test_today", base_addresses={"api": url}, max_network_retries=0, **options)


@pytest.fixture
def client(emulator) -> stripe.StripeClient:
    return sdk(emulator.url)


def refused(call, code: str | None = None, param: str | None = None, match: str | None = None) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError, match=match) as caught:
        call()
    error = caught.value
    assert error.http_status == 400
    assert (error.code, error.param) == (code or error.code, param or error.param), (error.code, error.param, error.user_message)
    return error


def test_a_saas_catalog_round_trips_with_every_field_of_todays_api(client):
    product = client.v1.products.create(
        params={
            "id": "pro",
            "name": "Pro",
            "marketing_features": [{"name": "Unlimited seats"}, {"name": "SSO"}],
            "images": ["https://example.com/pro.png"],
            "package_dimensions": {"height": 1.5, "length": 20, "weight": 300, "width": 10},
            "shippable": False,
            "statement_descriptor": "PRO PLAN",
            "tax_code": "txcd_10103001",
            "unit_label": "seat",
            "url": "https://example.com/pro",
            "default_price_data": {"currency": "usd", "unit_amount": 1500, "recurring": {"interval": "month"}},
        }
    )
    assert [f.name for f in product.marketing_features] == ["Unlimited seats", "SSO"]
    assert (product.package_dimensions.height, product.unit_label, product.url, product.shippable) == (1.5, "seat", "https://example.com/pro", False)
    yearly = client.v1.prices.create(
        params={
            "product": "pro",
            "currency": "usd",
            "unit_amount": 15000,
            "recurring": {"interval": "month", "interval_count": 12},
            "lookup_key": "pro_annual",
            "nickname": "Pro, yearly",
            "tax_behavior": "exclusive",
            "currency_options": {"eur": {"unit_amount": 14000}, "gbp": {"unit_amount": 12000, "tax_behavior": "inclusive"}},
        }
    )
    assert (yearly.recurring.interval_count, yearly.tax_behavior, yearly.type) == (12, "exclusive", "recurring")
    assert "currency_options" not in yearly and "tiers" not in yearly  # only when expanded
    tiered = client.v1.prices.create(
        params={"product": "pro", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "graduated", "tiers": GRADUATED, "recurring": {"interval": "month"}, "lookup_key": "pro_seats"}
    )
    assert (tiered.billing_scheme, tiered.unit_amount, tiered.tiers_mode) == ("tiered", None, "graduated")
    volume_tiers = [{"up_to": 5, "flat_amount": 0}, {"up_to": "inf", "unit_amount": 90}]
    volume = client.v1.prices.create(params={"product": "pro", "currency": "usd", "billing_scheme": "tiered", "tiers_mode": "volume", "tiers": volume_tiers})
    decimal = client.v1.prices.create(params={"product": "pro", "currency": "usd", "unit_amount_decimal": "0.125", "transform_quantity": {"divide_by": 1000, "round": "up"}})
    assert (decimal.unit_amount, decimal.unit_amount_decimal, decimal.type) == (None, Decimal("0.125"), "one_time")
    assert decimal.transform_quantity.to_dict() == {"divide_by": 1000, "round": "up"}
    tip = client.v1.prices.create(params={"currency": "usd", "custom_unit_amount": {"enabled": True, "minimum": 100, "preset": 500}, "product_data": {"name": "Tip jar"}})
    assert tip.custom_unit_amount.preset == 500 and client.v1.products.retrieve(tip.product).name == "Tip jar"

    expanded = client.v1.prices.retrieve(tiered.id, params={"expand": ["tiers"]})
    tiers = [(t.up_to, t.unit_amount, t.unit_amount_decimal, t.flat_amount) for t in expanded.tiers]
    assert tiers == [(10, 500, Decimal(500), None), (100, None, Decimal("412.5"), None), (None, 300, Decimal(300), 1000)]
    options = client.v1.prices.retrieve(yearly.id, params={"expand": ["currency_options"]}).currency_options
    assert {c: (o["unit_amount"], o["tax_behavior"]) for c, o in options.to_dict().items()} == {"usd": (15000, "exclusive"), "eur": (14000, "unspecified"), "gbp": (12000, "inclusive")}
    listed = client.v1.prices.list(params={"product": "pro", "expand": ["data.tiers", "data.currency_options"], "limit": 100}).data
    assert {p.id for p in listed} == {product.default_price, yearly.id, tiered.id, volume.id, decimal.id}
    assert all("tiers" in p and "currency_options" in p for p in listed)

    client.v1.prices.update(yearly.id, params={"nickname": "Pro, annual", "currency_options": {"eur": {"unit_amount": 13500}}, "metadata": {"plan": "pro"}})
    client.v1.products.update("pro", params={"default_price": yearly.id, "marketing_features": [{"name": "SSO"}], "unit_label": "", "package_dimensions": ""})
    after = client.v1.products.retrieve("pro", params={"expand": ["default_price.currency_options"]})
    assert after.default_price.nickname == "Pro, annual" and after.default_price.currency_options["eur"].unit_amount == 13500
    assert (after.unit_label, after.package_dimensions, [f.name for f in after.marketing_features]) == (None, None, ["SSO"])
    archived = client.v1.prices.update(tiered.id, params={"active": False})
    assert archived.active is False


def test_immutable_terms_are_refused_on_update_and_tax_behavior_set_only_once(client):
    client.v1.products.create(params={"id": "p", "name": "P"})
    price = client.v1.prices.create(params={"product": "p", "currency": "usd", "unit_amount": 100})
    for term in ({"unit_amount": 200}, {"currency": "eur"}, {"recurring": {"interval": "year"}}, {"tiers_mode": "volume"}, {"product": "q"}):
        refused(lambda term=term: client.v1.prices.update(price.id, params=term), "parameter_unknown", next(iter(term)))
    assert client.v1.prices.update(price.id, params={"tax_behavior": "inclusive"}).tax_behavior == "inclusive"
    refused(lambda: client.v1.prices.update(price.id, params={"tax_behavior": "exclusive"}), param="tax_behavior")


def test_tiered_prices_need_their_tiers_and_the_last_tier_is_inf(client):
    client.v1.products.create(params={"id": "t", "name": "T"})
    base = {"product": "t", "currency": "usd", "billing_scheme": "tiered"}
    refused(lambda: client.v1.prices.create(params=base), "parameter_missing")  # billing_scheme=tiered alone never makes a flat price
    refused(lambda: client.v1.prices.create(params={**base, "tiers_mode": "graduated"}), "parameter_missing", "tiers")
    refused(lambda: client.v1.prices.create(params={**base, "tiers": GRADUATED}), "parameter_missing", "tiers_mode")
    refused(lambda: client.v1.prices.create(params={**base, "tiers_mode": "volume", "tiers": [{"up_to": 5, "unit_amount": 1}]}), param="tiers[0][up_to]")
    refused(lambda: client.v1.prices.create(params={**base, "tiers_mode": "volume", "tiers": GRADUATED, "unit_amount": 5}), param="unit_amount")
    refused(lambda: client.v1.prices.create(params={"product": "t", "currency": "usd", "unit_amount": 5, "tiers_mode": "volume"}), param="tiers")
    refused(lambda: client.v1.prices.create(params={"product": "t", "currency": "usd", "unit_amount": 5, "unit_amount_decimal": "5"}), param="unit_amount_decimal")
    sideways = {**base, "tiers_mode": "sideways", "tiers": GRADUATED}
    refused(lambda: client.v1.prices.create(params=sideways), "parameter_invalid_string", "tiers_mode")


def test_tiers_and_currency_options_show_only_when_expanded_and_unknown_expansions_are_refused(client):
    client.v1.products.create(params={"id": "x", "name": "X", "default_price_data": {"currency": "usd", "unit_amount": 100, "currency_options": {"eur": {"unit_amount": 90}}}})
    price_id = client.v1.products.retrieve("x").default_price
    assert "currency_options" not in client.v1.prices.retrieve(price_id)
    assert "currency_options" in client.v1.prices.retrieve(price_id, params={"expand": ["currency_options"]})
    refused(lambda: client.v1.prices.retrieve(price_id, params={"expand": ["colour"]}), param="expand", match="cannot be expanded")
    refused(lambda: client.v1.prices.list(params={"expand": ["tiers"]}), param="expand", match="data.tiers")
    refused(lambda: client.v1.products.retrieve("x", params={"expand": ["default_price.colour"]}), param="expand")
    refused(lambda: client.v1.products.create(params={"name": "Y", "expand": ["nothing"]}), param="expand")
    assert client.v1.products.list(params={"expand": ["data.default_price.currency_options"]}).data[0].default_price.currency_options["eur"].unit_amount == 90
    assert [p.id for p in client.v1.products.list().data] == ["x"]  # the refused create above wrote nothing


def test_price_lists_apply_every_filter_and_list_active_prices_unless_asked(client):
    client.v1.products.create(params={"id": "f", "name": "F"})
    made = {
        "monthly": client.v1.prices.create(params={"product": "f", "currency": "usd", "unit_amount": 10, "recurring": {"interval": "month"}, "lookup_key": "f_m"}),
        "yearly": client.v1.prices.create(params={"product": "f", "currency": "usd", "unit_amount": 100, "recurring": {"interval": "year"}, "lookup_key": "f_y"}),
        "euro": client.v1.prices.create(params={"product": "f", "currency": "eur", "unit_amount": 9, "recurring": {"interval": "month", "usage_type": "licensed"}}),
        "once": client.v1.prices.create(params={"product": "f", "currency": "usd", "unit_amount": 500}),
        "old": client.v1.prices.create(params={"product": "f", "currency": "usd", "unit_amount": 1, "active": False}),
    }

    def names(**params) -> set[str]:
        ids = {p.id for p in client.v1.prices.list(params={"limit": 100, **params}).auto_paging_iter()}
        return {name for name, price in made.items() if price.id in ids}

    assert names() == {"monthly", "yearly", "euro", "once"}
    assert names(active=False) == {"old"}
    assert names(currency="eur") == {"euro"}
    assert names(currency="EUR") == {"euro"}
    assert names(type="one_time") == {"once"}
    assert names(recurring={"interval": "month"}) == {"monthly", "euro"}
    assert names(recurring={"usage_type": "licensed"}) == {"monthly", "yearly", "euro"}
    assert names(lookup_keys=["f_m", "f_y", "nope"]) == {"monthly", "yearly"}
    assert names(product="f", created={"gte": made["monthly"].created}) == {"monthly", "yearly", "euro", "once"}
    refused(lambda: client.v1.prices.list(params={"lookup_keys": [f"k{i}" for i in range(11)]}), param="lookup_keys")
    refused(lambda: client.v1.prices.list(params={"type": "sometimes"}), param="type")
    refused(lambda: client.v1.prices.list(params={"colour": "red"}), "parameter_unknown", "colour")


def test_product_lists_refuse_ids_with_a_cursor_and_filter_by_shippable_and_url(client):
    client.v1.products.create(params={"id": "a", "name": "A", "shippable": True, "url": "https://example.com/a"})
    client.v1.products.create(params={"id": "b", "name": "B"})
    refused(lambda: client.v1.products.list(params={"ids": ["a", "b"], "starting_after": "a"}), param="ids")
    assert [p.id for p in client.v1.products.list(params={"shippable": True}).data] == ["a"]
    assert [p.id for p in client.v1.products.list(params={"url": "https://example.com/a"}).data] == ["a"]


def test_unknown_or_empty_parameters_are_refused_as_stripe_refuses_them(client):
    client.v1.products.create(params={"id": "e", "name": "E", "default_price_data": {"currency": "usd", "unit_amount": 1}})
    refused(lambda: client.v1.products.update("e", params={"default_price": ""}), "parameter_invalid_empty", "default_price")
    refused(lambda: client.v1.products.update("e", params={"name": ""}), "parameter_invalid_empty", "name")
    refused(lambda: client.v1.products.create(params={"name": "Z", "colour": "red"}), "parameter_unknown", "colour")
    refused(lambda: client.v1.products.create(params={"name": "Z", "package_dimensions": {"height": 1}}), "parameter_missing", "package_dimensions[length]")
    refused(lambda: client.v1.prices.create(params={"product": "e", "currency": "usd", "unit_amount": "ten"}), "parameter_invalid_integer", "unit_amount")
    refused(lambda: client.v1.prices.create(params={"product": "e", "currency": "xyz", "unit_amount": 1}), param="currency")
    refused(lambda: client.v1.prices.create(params={"product": "e", "currency": "usd", "unit_amount": 1, "recurring": {"interval": "month", "interval_count": 37}}), param="recurring[interval_count]")
    refused(lambda: client.v1.products.update("e", params={"statement_descriptor": "<script>"}), param="statement_descriptor")
    refused(lambda: client.v1.webhook_endpoints.create(params={"url": "https://example.com/hook", "enabled_events": ["product.renamed"]}), param="enabled_events[0]")


def test_what_stripe_takes_today_beyond_its_description_is_taken(client):
    """`type` on a product create (the SDK still sends it for older integrations), and billing
    intervals up to three years (36 months, 156 weeks, 3 years)."""
    for kind in ("good", "service"):
        assert client.v1.products.create(params={"id": f"t_{kind}", "name": kind.title(), "type": kind}).id == f"t_{kind}"
    refused(lambda: client.v1.products.create(params={"name": "Z", "type": "widget"}), param="type")
    for interval, count in (("month", 24), ("month", 36), ("week", 156), ("year", 3)):
        price = client.v1.prices.create(params={"product": "t_service", "currency": "usd", "unit_amount": 100, "recurring": {"interval": interval, "interval_count": count}})
        assert (price.recurring.interval, price.recurring.interval_count) == (interval, count)
    error = refused(lambda: client.v1.prices.create(params={"product": "t_service", "currency": "usd", "unit_amount": 1, "recurring": {"interval": "year", "interval_count": 4}}))
    assert "three years (3 years, 36 months, or 156 weeks)" in error.user_message
    # A tax code not in Stripe's form (txcd_ and 8 digits) is no tax code Stripe has.
    assert client.v1.products.create(params={"id": "taxed", "name": "Taxed", "tax_code": "txcd_10103001"}).tax_code == "txcd_10103001"
    refused(lambda: client.v1.products.update("taxed", params={"tax_code": "saas"}), "resource_missing", "tax_code", match="No such tax code: 'saas'")


def test_a_lookup_key_is_held_by_one_price_and_transfer_moves_it(client):
    client.v1.products.create(params={"id": "k", "name": "K"})
    first = client.v1.prices.create(params={"product": "k", "currency": "usd", "unit_amount": 1, "lookup_key": "k_default"})
    second = client.v1.prices.create(params={"product": "k", "currency": "usd", "unit_amount": 2})
    refused(lambda: client.v1.prices.update(second.id, params={"lookup_key": "k_default"}), param="lookup_key")
    client.v1.prices.update(second.id, params={"lookup_key": "k_default", "transfer_lookup_key": True})
    assert client.v1.prices.retrieve(first.id).lookup_key is None
    updates = {e.data.object.id: e.data.previous_attributes.to_dict() for e in client.v1.events.list(params={"type": "price.updated"}).data}
    assert updates == {first.id: {"lookup_key": "k_default"}, second.id: {"lookup_key": None}}


def test_the_emulator_takes_every_published_version_and_refuses_a_malformed_or_unknown_one(emulator, client):
    assert client.v1.products.create(params={"id": "v", "name": "V"}).id == "v"  # the SDK sends its pinned version
    assert sdk(emulator.url, stripe_version=API_VERSION).v1.products.retrieve("v").id == "v"
    response = httpx.get(f"{emulator.url}/v1/products/v", headers={"Authorization": "Bearer sk_test_x", "Stripe-Version": stripe.api_version})
    assert response.headers["stripe-version"] == stripe.api_version
    for version in ("2024-06-20", "2019-02-19", "2011-01-01", "2024-09-30.acacia", "2026-11-18.endive"):  # any published one, per request
        assert sdk(emulator.url, stripe_version=version).v1.products.retrieve("v").id == "v"
    for version in ("2026-8-26", "dahlia", "2022-08-02", "2025-09-30.acacia"):  # malformed, or never published
        error = refused(lambda version=version: sdk(emulator.url, stripe_version=version).v1.products.retrieve("v"), match="Invalid Stripe API version")
        assert error.user_message == f"Invalid Stripe API version: {version}"
    # A new account's default version is the newest the emulator answers as (the SDK's): events are rendered at it.
    [event] = client.v1.events.list().data
    assert event.api_version == stripe.api_version and API_VERSION == "2026-08-26.dahlia"
    endpoint = client.v1.webhook_endpoints.create(params={"url": "https://example.com/hook", "enabled_events": ["*"]})
    assert endpoint.api_version is None  # no version of its own: it follows the account's default, as on Stripe
    pinned = client.v1.webhook_endpoints.create(params={"url": "https://example.com/hook", "enabled_events": ["*"], "api_version": API_VERSION})
    assert pinned.api_version == API_VERSION
    # An endpoint may be pinned to any published version, newer than the description's date too; not to an unknown one.
    for version in (stripe.api_version, "2020-08-27"):
        hook = {"url": "https://example.com/hook", "enabled_events": ["*"], "api_version": version}
        assert client.v1.webhook_endpoints.create(params=hook).api_version == version
    unknown = {"url": "https://example.com/hook", "enabled_events": ["*"], "api_version": "2022-08-02"}
    refused(lambda: client.v1.webhook_endpoints.create(params=unknown), param="api_version")


def test_idempotency_replays_completed_answers_only_for_24_hours(emulator, client):
    def create(name: str, key: str):
        return client.v1.products.create(params={"id": "i", "name": name}, options={"idempotency_key": key})

    client.v1.products.create(params={"id": "taken", "name": "Taken"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.products.create(params={"id": "taken", "name": "Again"}, options={"idempotency_key": "k-400"})
    client.v1.products.delete("taken")
    # A refused (4xx) answer is not saved: the same request with the same key now executes.
    assert client.v1.products.create(params={"id": "taken", "name": "Again"}, options={"idempotency_key": "k-400"}).name == "Again"

    assert create("First", "k-1").name == "First"
    with pytest.raises(stripe.IdempotencyError, match="same parameters"):
        create("Other", "k-1")
    httpx.post(f"{emulator.url}/_emulator/clock", json={"advance_s": 23 * 3600}).raise_for_status()
    assert create("First", "k-1").name == "First"  # replayed: nothing executed
    assert len(client.v1.events.list(params={"type": "product.created"}).data) == 3
    httpx.post(f"{emulator.url}/_emulator/clock", json={"advance_s": 3600}).raise_for_status()
    # 24 hours on, the key is pruned: the request executes (and Stripe refuses the duplicate id).
    with pytest.raises(stripe.InvalidRequestError, match="already exists"):
        create("Other", "k-1")
    later = client.v1.products.create(params={"id": "later", "name": "Later"})
    assert later.created >= client.v1.products.retrieve("i").created + 24 * 3600


def test_webhook_endpoints_are_retrieved_updated_listed_and_show_their_secret_once(client):
    made = [client.v1.webhook_endpoints.create(params={"url": f"https://example.com/hook/{i}", "enabled_events": ["product.created"]}) for i in range(3)]
    assert all(e.secret.startswith("whsec_") for e in made)
    endpoint = client.v1.webhook_endpoints.retrieve(made[0].id)
    assert "secret" not in endpoint and endpoint.status == "enabled"
    updated = client.v1.webhook_endpoints.update(made[0].id, params={"enabled_events": ["price.created", "price.updated"], "url": "https://example.com/new", "disabled": True, "description": "prices"})
    assert (updated.enabled_events, updated.url, updated.status, updated.description) == (["price.created", "price.updated"], "https://example.com/new", "disabled", "prices")
    assert "secret" not in updated
    assert client.v1.webhook_endpoints.update(made[0].id, params={"disabled": False}).status == "enabled"
    page = client.v1.webhook_endpoints.list(params={"limit": 2})
    assert len(page.data) == 2 and page.has_more and all("secret" not in e for e in page.data)
    assert [e.id for e in client.v1.webhook_endpoints.list(params={"limit": 2}).auto_paging_iter()] == [e.id for e in reversed(made)]
    client.v1.webhook_endpoints.delete(made[1].id)
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.webhook_endpoints.retrieve(made[1].id)
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"


def test_a_connected_account_answers_only_once_it_is_connected(emulator, client):
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.products.list(options={"stripe_account": "acct_new"})
    assert caught.value.http_status == 403 and (caught.value.json_body or {})["error"]["code"] == "account_invalid"
    assert "does not have access to account 'acct_new' (or that account does not exist)" in (caught.value.user_message or "")
    assert "sk_test_today" not in (caught.value.user_message or "")  # the key is masked, as Stripe masks it
    connected = httpx.post(f"{emulator.url}/_emulator/accounts", json={"id": "acct_new"})
    assert connected.json() == {"id": "acct_new", "connected": True}
    made = client.v1.products.create(params={"id": "c1", "name": "Connected"}, options={"stripe_account": "acct_new"})
    assert made.id == "c1" and [p.id for p in client.v1.products.list().data] == []  # kept apart from the platform's own
    assert "acct_new" in httpx.get(f"{emulator.url}/_emulator/accounts").json()["accounts"]
    assert httpx.post(f"{emulator.url}/_emulator/accounts", json={"id": "nope"}).status_code == 400
