"""Assets as functions: each asset's own logic with `dg.build_asset_context` and small resources.

No seeded job, no Dagster home: the flows between assets are tested in test_reconcile_flow.py;
here each asset is called with the frames and resources it would get, and what it yields
(its output, metadata and check results) is read directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import pandas as pd
import pytest
from sqlalchemy import insert, select, text

from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.schema import quarantine
from recon_pipeline.catalog.source import FIELDS
from recon_pipeline.defs.reconciliation import catalog_drift, local_products, stripe_products
from recon_pipeline.defs.repair import RepairConfig, catalog_repair
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.reconcile import COMPARED_FIELDS, local_frame, stripe_frame


def run(asset: dg.AssetsDefinition, resources: dict[str, Any], config: dict[str, Any] | None = None, **inputs: Any) -> tuple[dg.Output, dict[str, dg.AssetCheckResult]]:
    """Call an asset as a function; its Output and its check results by name."""
    context = dg.build_asset_context(resources=resources, asset_config=config)
    yielded: list[Any] = list(asset(context, **inputs))  # type: ignore[call-overload]  # a generator, for assets with checks
    [output] = [y for y in yielded if isinstance(y, dg.Output)]
    return output, {str(y.check_name): y for y in yielded if isinstance(y, dg.AssetCheckResult)}


def values(metadata: dict[str, Any]) -> dict[str, Any]:
    return {key: getattr(value, "value", value) for key, value in metadata.items()}


def catalog_rows(*products: CatalogProduct) -> pd.DataFrame:
    now = pd.Timestamp("2026-11-25T12:00:00Z").to_pydatetime()
    return local_frame(pd.DataFrame([p.as_row(now) for p in products], columns=list(FIELDS)))


def stripe_products_of(*rows: dict[str, Any]) -> pd.DataFrame:
    return stripe_frame([{"active": True, "metadata": {}, "default_price": None, **row} for row in rows])


@pytest.fixture
def catalog_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url)
    return url


def test_catalog_drift_counts_every_field_even_at_zero_and_fails_above_the_policys_rate(catalog_url):
    local = catalog_rows(CatalogProduct(id="a", name="A"), CatalogProduct(id="b", name="B"), CatalogProduct(id="c", name="C"))
    remote = stripe_products_of({"id": "a", "name": "A renamed"}, {"id": "b", "name": "B"}, {"id": "c", "name": "C"})
    for threshold, passes in ((0.5, True), (0.2, False)):
        resources = {"catalog": CatalogResource(url=catalog_url), "policy": ReconPolicy(max_drift_rate=threshold)}
        output, checks = run(catalog_drift, resources, local_products=local, stripe_products=remote)
        metadata = values(output.metadata)
        assert output.value["product_id"].tolist() == ["a"]
        # Every field has its count, zeros included: the UI plots continuous lines.
        assert {f: metadata[f"drift/field_mismatch/{f}"] for f in COMPARED_FIELDS} == {f: int(f == "name") for f in COMPARED_FIELDS}
        assert (metadata["drift/total"], metadata["products_with_drift"], metadata["products_total"]) == (1, 1, 3)
        check = checks["drift_rate_below_threshold"]
        assert check.passed is passes and values(check.metadata)["threshold"] == threshold
        assert (check.description is None) is passes


def test_a_quarantined_product_in_stripe_is_left_alone_not_reported_as_an_orphan(catalog_url):
    catalog = Catalog.open(catalog_url)
    with catalog.engine.begin() as conn:
        conn.execute(insert(quarantine).values(at=pd.Timestamp.now(tz="UTC").to_pydatetime(), product_id="held", reason="negative amount"))
    remote = stripe_products_of({"id": "held", "name": "In Stripe"}, {"id": "gone", "name": "Orphan"})
    output, _ = run(catalog_drift, {"catalog": CatalogResource(url=catalog_url), "policy": ReconPolicy()}, local_products=catalog_rows(), stripe_products=remote)
    assert output.value[["product_id", "kind"]].values.tolist() == [["gone", "orphan_in_stripe"]]


def test_local_products_quarantines_a_bad_row_with_its_reason_and_warns(catalog_url):
    catalog = Catalog.open(catalog_url)
    upsert_products(catalog.engine, [CatalogProduct(id="good", name="Good", unit_amount=100, currency="usd")])
    with catalog.engine.begin() as conn:  # what a bulk import around our validation could leave behind
        conn.execute(text("INSERT INTO products (id, name, active, unit_amount, currency, updated_at) VALUES ('bad', 'Bad', 1, -5, 'usd', '2026-11-25')"))
    output, checks = run(local_products, {"catalog": CatalogResource(url=catalog_url)})
    assert output.value["product_id"].tolist() == ["good"]
    assert values(output.metadata)["quarantined"] == 1
    warning = checks["no_quarantined_rows"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN and "unit_amount=-5" in (warning.description or "")
    assert checks["ids_unique"].passed
    with catalog.engine.connect() as conn:
        assert conn.execute(select(quarantine.c.product_id)).scalars().all() == ["bad"]


def test_stripe_products_pages_the_whole_account_and_says_so(catalog_url, emulator):
    fixtures = [{"id": f"p{i:03d}", "name": f"P{i}", "created": 1_700_000_000 + i * 60} for i in range(250)]
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": fixtures}).raise_for_status()
    stripe = StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000)
    output, checks = run(stripe_products, {"catalog": CatalogResource(url=catalog_url), "stripe": stripe})
    assert sorted(output.value["product_id"]) == [f["id"] for f in fixtures]
    assert checks["snapshot_complete"].passed and checks["ids_unique"].passed
    assert values(output.metadata)["dagster/row_count"] == 250


def test_catalog_repair_above_the_breakers_share_plans_but_writes_nothing(catalog_url, emulator):
    local = catalog_rows(*(CatalogProduct(id=f"new_{i}", name=f"New {i}") for i in range(3)), CatalogProduct(id="kept", name="Kept"))
    remote = stripe_products_of({"id": "kept", "name": "Kept"})
    drift = pd.DataFrame({"product_id": [f"new_{i}" for i in range(3)], "kind": "missing_in_stripe", "field": None, "local_value": None, "stripe_value": None})
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(max_repair_share=0.5),
    }
    output, checks = run(catalog_repair, resources, RepairConfig().model_dump(), catalog_drift=drift, local_products=local, stripe_products=remote)
    assert not checks["mass_drift_breaker"].passed and "3 of 4 products would be written" in (checks["mass_drift_breaker"].description or "")
    assert set(output.value["status"]) == {"dry_run"} and values(output.metadata)["breaker_tripped"]
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["endpoints"].get("POST /v1/products", 0) == 0


def test_catalog_repair_refuses_to_adopt_into_a_users_own_table(tmp_path: Path, emulator):
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    catalog = Catalog.open(url)
    with catalog.engine.begin() as conn:
        conn.execute(text("CREATE TABLE shop_items (sku TEXT, title TEXT)"))
    resources = {
        "catalog": CatalogResource(url=url, table="shop_items", columns={"id": "sku", "name": "title"}),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(),
    }
    empty = catalog_rows()
    with pytest.raises(dg.Failure, match="orphan_policy 'adopt' would write into the catalog, but the catalog is your own table 'shop_items'"):
        run(catalog_repair, resources, {"orphan_policy": "adopt"}, catalog_drift=empty.iloc[:0], local_products=empty, stripe_products=stripe_products_of())


def test_a_misspelled_orphan_policy_in_run_config_fails_the_run_naming_it(catalog_url, emulator):
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(),
    }
    empty = catalog_rows()
    with pytest.raises(dg.Failure, match="orphan_policy='archve' is not one of report, archive, adopt"):
        run(catalog_repair, resources, {"orphan_policy": "archve"}, catalog_drift=empty.iloc[:0], local_products=empty, stripe_products=stripe_products_of())
