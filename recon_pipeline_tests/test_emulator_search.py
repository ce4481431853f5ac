"""Search for products and prices, in Stripe's query language, with the official SDK as client.

The queries and answers follow docs.stripe.com/search ("Search query language", "Supported
query fields") and the API reference's examples; every body is validated against the vendored
spec by the `emulator` fixture.
"""

from __future__ import annotations

import httpx
import pytest
import stripe

UNPARSABLE = "We were unable to parse your search query."


@pytest.fixture
def client(emulator) -> stripe.StripeClient:
    client = stripe.StripeClient("sk_test_search", base_addresses={"api": emulator.url}, max_network_retries=0)
    products: list[dict] = [
        {"id": "pro", "name": "Pro plan", "description": "For teams of one two three", "metadata": {"order_id": "6735", "tier": "gold"}},
        {"id": "basic", "name": "Basic plan", "metadata": {"order_id": "6736"}, "url": "https://example.com/basic"},
        {"id": "legacy", "name": "Legacy Pro", "active": False, "metadata": {"order_id": "6735"}},
        {"id": "kit", "name": "Starter kit", "shippable": True, "url": "https://example.com/kit"},
    ]
    for product in products:
        client.v1.products.create(params=product)  # type: ignore[arg-type]
    client.v1.prices.create(params={"product": "pro", "currency": "usd", "unit_amount": 1500, "recurring": {"interval": "month"}, "lookup_key": "pro_monthly"})
    client.v1.prices.create(params={"product": "pro", "currency": "eur", "unit_amount": 1400, "lookup_key": "pro_eur_once"})
    old = client.v1.prices.create(params={"product": "basic", "currency": "usd", "unit_amount": 500, "recurring": {"interval": "year"}, "metadata": {"legacy": "yes"}})
    client.v1.prices.update(old.id, params={"active": False})
    return client


def ids(result) -> list[str]:
    return [obj.id for obj in result.data]


def products(client: stripe.StripeClient, query: str) -> list[str]:
    return sorted(ids(client.v1.products.search(params={"query": query, "limit": 100})))


def lookup_keys(client: stripe.StripeClient, query: str) -> list[str]:
    return sorted(str(p.lookup_key) for p in client.v1.prices.search(params={"query": query, "limit": 100}).data)


def test_products_are_found_by_each_field_the_language_allows(client):
    assert products(client, "active:'true' AND metadata['order_id']:'6735'") == ["pro"]  # the API reference's example
    assert products(client, 'metadata["order_id"]:"6735"') == ["legacy", "pro"]  # inactive ones too: search does not filter them
    assert products(client, "name~'pro'") == ["legacy", "pro"]  # a substring, any case
    assert products(client, 'name:"PRO"') == ["legacy", "pro"]  # a word of the name, any case
    assert products(client, 'description:"one two three"') == ["pro"] and products(client, 'description:"three two"') == []  # the words in order
    assert products(client, "-name:'plan'") == ["kit", "legacy"]
    assert products(client, "shippable:'true' OR url:'https://example.com/basic'") == ["basic", "kit"]
    assert products(client, "url:null") == ["legacy", "pro"] and products(client, "-url:null") == ["basic", "kit"]
    assert products(client, "-metadata['tier']:null") == ["pro"]  # has the key
    assert products(client, "active:'false' metadata['order_id']:'6735'") == ["legacy"]  # a space is AND


def test_prices_are_found_by_each_field_the_language_allows(client):
    assert lookup_keys(client, "product:'pro'") == ["pro_eur_once", "pro_monthly"]
    assert lookup_keys(client, "currency:'EUR'") == ["pro_eur_once"]
    assert lookup_keys(client, "type:'recurring' AND active:'true'") == ["pro_monthly"]
    assert lookup_keys(client, "lookup_key~'month'") == ["pro_monthly"]
    assert lookup_keys(client, "metadata['legacy']:'yes'") == ["None"]  # the archived price: search finds inactive prices


def test_results_page_with_next_page_newest_first_and_total_count_when_expanded(client):
    first = client.v1.products.search(params={"query": "-name:'nothing'", "limit": 3, "expand": ["total_count"]})
    assert first.object == "search_result" and first.url == "/v1/products/search" and first.has_more and first.total_count == 4
    assert ids(first) == ["kit", "legacy", "basic"]  # newest first
    second = client.v1.products.search(params={"query": "-name:'nothing'", "limit": 3, "page": first.next_page})
    assert ids(second) == ["pro"] and not second.has_more and second.next_page is None and "total_count" not in second
    every = [p.id for p in client.v1.products.search(params={"query": "-name:'nothing'", "limit": 1}).auto_paging_iter()]
    assert every == ["kit", "legacy", "basic", "pro"]  # the SDK follows next_page to the end
    expanded = client.v1.prices.search(params={"query": "product:'pro'", "expand": ["data.product"]})
    assert {price.product.name for price in expanded.data} == {"Pro plan"}


@pytest.mark.parametrize(
    "query, message",
    [
        ("asdf", UNPARSABLE),
        ("name:'Pro", UNPARSABLE),
        ("name:'a' AND name:'b' OR name:'c'", UNPARSABLE),  # AND and OR never together
        ("name~'pr'", UNPARSABLE),  # a substring of 3 characters at least
        ("active~'tru'", UNPARSABLE),  # `~` on text fields only
        (" AND ".join(["name:'p'"] * 11), UNPARSABLE),  # 10 clauses at most
        ("colour:'red'", "Field `colour` is an unsupported search field for resource `products`."),
        ("created>1700000000", "Field `created` is an unsupported search field for resource `products`."),
    ],
)
def test_a_query_stripe_cannot_run_is_refused_as_stripe_refuses_it(client, query, message):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.products.search(params={"query": query})
    assert caught.value.http_status == 400 and message in (caught.value.user_message or "") and caught.value.param == "query"


def test_a_search_without_a_query_or_with_another_searchs_page_is_refused(emulator, client):
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.search(params={})
    assert (caught.value.code, caught.value.param) == ("parameter_missing", "query")
    page = client.v1.products.search(params={"query": "-name:'x'", "limit": 1}).next_page
    with pytest.raises(stripe.InvalidRequestError, match="not a `next_page` of this search"):
        client.v1.products.search(params={"query": "name:'plan'", "page": page})
    answer = httpx.get(f"{emulator.url}/v1/products/search", params={"query": "name:'plan'"}, auth=("sk_test_search", ""))
    assert answer.status_code == 200 and answer.json()["next_page"] is None  # never read as the product `search`
