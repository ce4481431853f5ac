"""A repair killed between any two of its writes converges on the next run, with no duplicate
price and nothing touched that the catalog does not own (the emulator over HTTP)."""

from __future__ import annotations

import httpx
import pytest

from recon_pipeline.catalog import Catalog, CatalogPrice, CatalogProduct, replace_products
from recon_pipeline.catalog.changes import change_price
from recon_pipeline.repair import converge
from recon_pipeline.stripe_api import RetryPolicy, StripeGateway
from recon_pipeline.testing import assert_no_duplicates, drift_rows


class Killed(Exception):
    """The process died here."""


class DiesAfter(StripeGateway):
    """A client whose process is killed after `writes` writes (reads go on until then)."""

    def __init__(self, url: str, writes: int):
        super().__init__("sk_test_resume", url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(1, 0.01, 0.01))
        self.left = writes

    def request(self, method, path, params=None, idempotency_key=None, tally=None):
        if method.lower() == "post":
            if self.left == 0:
                raise Killed(f"killed before {method} {path}")
            self.left -= 1
        return super().request(method, path, params, idempotency_key=idempotency_key, tally=tally)


def prices(url: str) -> list[dict]:
    auth = ("sk_test_resume", "")
    return [p for active in ("true", "false") for p in httpx.get(f"{url}/v1/prices", params={"active": active, "limit": 100}, auth=auth).json()["data"]]


@pytest.fixture
def account(tmp_path, emulator):
    """A product sold monthly (the default) and yearly, the same on both sides, plus a price made in the dashboard."""
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    monthly = CatalogPrice(lookup_key="pro_m", product_id="pro", currency="usd", unit_amount=1000, recurring_interval="month", metadata={"plan": "pro"})
    yearly = CatalogPrice(lookup_key="pro_y", product_id="pro", currency="usd", unit_amount=10000, recurring_interval="year")
    replace_products(catalog.engine, [CatalogProduct(id="pro", name="Pro", default_price="pro_m")], [monthly, yearly])
    fixture = {
        "id": "pro",
        "name": "Pro",
        "created": 1_700_000_000,
        "default_price": "pro_m",
        "prices": [
            {"currency": "usd", "unit_amount": 1000, "recurring": {"interval": "month"}, "lookup_key": "pro_m", "metadata": {"plan": "pro"}},
            {"currency": "usd", "unit_amount": 10000, "recurring": {"interval": "year"}, "lookup_key": "pro_y"},
            {"currency": "usd", "unit_amount": 500, "nickname": "Made in the dashboard"},
        ],
    }
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [fixture]}).raise_for_status()
    unmanaged = [p["id"] for p in prices(emulator.url) if not p["lookup_key"]]
    assert drift_rows(catalog, emulator.url) == 1  # the dashboard's price: reported, never written
    return catalog, unmanaged


@pytest.mark.parametrize("killed_after", [0, 1, 2, 3])
def test_a_replacement_killed_after_any_write_converges_on_the_next_run(account, emulator, killed_after):
    """The replacement of the default price is four writes: mark the old price, create the new one
    (it takes the lookup key), move the default, archive the old one. Killed after any of them,
    the next run finishes the job: one new price, the old one archived, the others untouched."""
    catalog, unmanaged = account
    change_price(catalog, "pro_m", unit_amount=1200)
    with pytest.raises(Killed):
        converge(catalog, DiesAfter(emulator.url, killed_after))
    converged = converge(catalog, StripeGateway("sk_test_resume", emulator.url, global_rate=None, endpoint_rate=None))
    assert converged.errors == {} and converged.remaining.empty

    by_key = {p["lookup_key"]: p for p in prices(emulator.url)}
    assert by_key["pro_m"]["unit_amount"] == 1200 and by_key["pro_m"]["active"]
    assert by_key["pro_y"]["active"] and by_key["pro_y"]["unit_amount"] == 10000
    product = httpx.get(f"{emulator.url}/v1/products/pro", auth=("sk_test_resume", "")).json()
    assert product["default_price"] == by_key["pro_m"]["id"]
    replaced = [p for p in prices(emulator.url) if p["lookup_key"] is None and p["id"] not in unmanaged]
    assert [(p["unit_amount"], p["active"], p["metadata"]["recon_replaced_by"]) for p in replaced] == [(1000, False, "pro_m")]
    assert all(p["active"] for p in prices(emulator.url) if p["id"] in unmanaged), "the dashboard's price is not the catalog's: untouched"
    assert len(prices(emulator.url)) == 4  # one new price, no duplicate
    assert drift_rows(catalog, emulator.url) == 1  # still only the dashboard's price, reported
    assert_no_duplicates(emulator.url, unmanaged=unmanaged)


def test_a_product_stripe_lost_after_its_create_is_created_again_with_a_key_of_its_own(tmp_path, emulator):
    """Deleted in the dashboard minutes after repair created it: the next repair creates it
    again, instead of sending the first create's key (Stripe would replay its answer for a day)."""
    catalog = Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}")
    replace_products(catalog.engine, [CatalogProduct(id="gone", name="Gone soon")])
    gateway = StripeGateway("sk_test_resume", emulator.url, global_rate=None, endpoint_rate=None, retry=RetryPolicy(1, 0.01, 0.01))
    assert converge(catalog, gateway).remaining.empty
    auth = ("sk_test_resume", "")
    assert httpx.delete(f"{emulator.url}/v1/products/gone", auth=auth).json()["deleted"] is True
    assert drift_rows(catalog, emulator.url) == 1
    again = converge(catalog, gateway)
    assert again.remaining.empty and drift_rows(catalog, emulator.url) == 0
    assert httpx.get(f"{emulator.url}/v1/products/gone", auth=auth).json()["name"] == "Gone soon"
    # A repair that read Stripe before the create (a stale plan) keeps the key: no second product.
    assert converge(catalog, gateway, sides=again.sides).remaining.empty
    assert_no_duplicates(emulator.url)
