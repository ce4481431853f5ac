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

from recon_pipeline.catalog import Catalog, CatalogPrice, CatalogProduct, upsert_products
from recon_pipeline.catalog.prices import PRICE_COLUMNS
from recon_pipeline.catalog.schema import quarantine
from recon_pipeline.catalog.source import FIELDS
from recon_pipeline.defs.parquet_io import ParquetIOManager
from recon_pipeline.defs.reconciliation import catalog_drift, fits_interval, read_catalog, snapshot
from recon_pipeline.defs.repair import RepairConfig, catalog_repair
from recon_pipeline.defs.resources import CatalogResource, ReconPolicy, StripeResource
from recon_pipeline.reconcile import COMPARED_FIELDS, DRIFT_COLUMNS, PRICE_COMPARED_FIELDS, local_frame, local_price_frame, stripe_frame, stripe_price_frame
from recon_pipeline.reconcile.snapshot import CONCURRENCY
from recon_pipeline.settings import cron_interval_s


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


def price_rows(*prices: CatalogPrice) -> pd.DataFrame:
    now = pd.Timestamp("2026-11-25T12:00:00Z").to_pydatetime()
    return local_price_frame(pd.DataFrame([p.as_row(now) for p in prices], columns=list(PRICE_COLUMNS)))


def stripe_prices_of(*rows: dict[str, Any]) -> pd.DataFrame:
    return stripe_price_frame([{"active": True, "currency": "usd", "unit_amount": 100, "created": 1, **row} for row in rows])


NO_PRICES = {"local_prices": price_rows(), "stripe_prices": stripe_prices_of()}


@pytest.fixture
def catalog_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    Catalog.open(url)
    return url


def test_catalog_drift_counts_every_field_even_at_zero_and_fails_above_the_policys_rate(catalog_url):
    local = catalog_rows(CatalogProduct(id="a", name="A"), CatalogProduct(id="b", name="B"), CatalogProduct(id="c", name="C"))
    remote = stripe_products_of({"id": "a", "name": "A renamed"}, {"id": "b", "name": "B"}, {"id": "c", "name": "C"})
    prices = price_rows(CatalogPrice(lookup_key="a_m", product_id="a", currency="usd", unit_amount=100))
    remote_prices = stripe_prices_of({"id": "price_1", "product": "a", "lookup_key": "a_m", "unit_amount": 150})
    for threshold, passes in ((0.5, True), (0.2, False)):
        resources = {"catalog": CatalogResource(url=catalog_url), "policy": ReconPolicy(max_drift_rate=threshold)}
        output, checks = run(catalog_drift, resources, local_products=local, stripe_products=remote, local_prices=prices, stripe_prices=remote_prices)
        metadata = values(output.metadata)
        assert output.value[["product_id", "kind"]].values.tolist() == [["a", "field_mismatch"], ["a", "price_field_mismatch"]]
        assert list(output.value.columns) == list(DRIFT_COLUMNS)
        # Every field has its count, zeros included: the UI plots continuous lines.
        assert {f: metadata[f"drift/field_mismatch/{f}"] for f in COMPARED_FIELDS} == {f: int(f == "name") for f in COMPARED_FIELDS}
        assert {f: metadata[f"drift/price_field_mismatch/{f}"] for f in PRICE_COMPARED_FIELDS} == {f: int(f == "unit_amount") for f in PRICE_COMPARED_FIELDS}
        assert (metadata["drift/total"], metadata["drift/price_field_mismatch"], metadata["products_with_drift"], metadata["products_total"]) == (2, 1, 1, 3)
        assert "a_m" in metadata["preview"]
        check = checks["drift_rate_below_threshold"]
        assert check.passed is passes and values(check.metadata)["threshold"] == threshold
        assert (check.description is None) is passes


def test_a_quarantined_product_in_stripe_is_left_alone_not_reported_as_an_orphan(catalog_url):
    catalog = Catalog.open(catalog_url)
    with catalog.engine.begin() as conn:
        conn.execute(insert(quarantine).values(at=pd.Timestamp.now(tz="UTC").to_pydatetime(), product_id="held", reason="negative amount"))
    remote = stripe_products_of({"id": "held", "name": "In Stripe"}, {"id": "gone", "name": "Orphan"})
    output, _ = run(catalog_drift, {"catalog": CatalogResource(url=catalog_url), "policy": ReconPolicy()}, local_products=catalog_rows(), stripe_products=remote, **NO_PRICES)
    assert output.value[["product_id", "kind"]].values.tolist() == [["gone", "orphan_in_stripe"]]


def test_local_products_and_prices_quarantine_a_bad_row_with_its_reason_and_warn(catalog_url, tmp_path):
    catalog = Catalog.open(catalog_url)
    upsert_products(catalog.engine, [CatalogProduct(id="good", name="Good")])
    with catalog.engine.begin() as conn:  # what a bulk import around our validation could leave behind
        conn.execute(text("INSERT INTO products (id, name, active, images, updated_at) VALUES ('bad', 'Bad', 1, '[\"ftp://x\"]', '2026-11-25')"))
        conn.execute(text("INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, updated_at) VALUES ('good_m', 'good', 1, 'usd', -5, 'per_unit', '2026-11-25')"))
        conn.execute(text("INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, updated_at) VALUES ('good_y', 'good', 1, 'usd', 500, 'per_unit', '2026-11-25')"))
        conn.execute(text("INSERT INTO prices (lookup_key, product_id, active, currency, unit_amount, billing_scheme, updated_at) VALUES ('bad_m', 'bad', 1, 'usd', 500, 'per_unit', '2026-11-25')"))
    # A product of a Stripe account RECON_STRIPE_ACCOUNTS does not name has nowhere to go.
    upsert_products(catalog.engine, [CatalogProduct(id="in_fr", name="Fr", account="fr")])
    stripe = StripeResource(api_key="sk_test_assets", api_base="http://127.0.0.1:9", global_rate=1, endpoint_rate=1)  # not called
    results = read_catalog(CatalogResource(url=catalog_url), stripe, account=None, staging=tmp_path)  # what the snapshot step yields for the catalog
    outputs = {r.output_name: r for r in results if isinstance(r, dg.Output)}
    by_asset = lambda asset: {str(r.check_name): r for r in results if isinstance(r, dg.AssetCheckResult) and r.asset_key == dg.AssetKey(asset)}
    output, checks = outputs["local_products"], by_asset("local_products")
    assert output.value.frame()["product_id"].tolist() == ["good"]
    assert values(output.metadata)["quarantined"] == 2
    warning = checks["no_quarantined_rows"]
    assert not warning.passed and warning.severity == dg.AssetCheckSeverity.WARN
    reasons = values(warning.metadata)["reasons"]
    assert "images=['ftp://x']" in reasons and "sold in the Stripe account 'fr', which RECON_STRIPE_ACCOUNTS does not name (default)" in reasons
    assert checks["ids_unique"].passed
    prices, price_checks = outputs["local_prices"], by_asset("local_prices")
    assert prices.value.frame()["lookup_key"].tolist() == ["good_y"]
    reasons = values(price_checks["no_quarantined_rows"].metadata)["reasons"]
    assert "unit_amount=-5" in reasons and "'bad_m': product_id='bad' is not a catalog product that can be synced" in reasons
    with catalog.engine.connect() as conn:
        assert sorted(conn.execute(select(quarantine.c.kind, quarantine.c.product_id, quarantine.c.lookup_key)).all()) == [
            ("price", "bad", "bad_m"),
            ("price", "good", "good_m"),
            ("product", "bad", None),
            ("product", "in_fr", None),
        ]
        first_held = dict(conn.execute(select(quarantine.c.lookup_key, quarantine.c.at).where(quarantine.c.kind == "price")).all())
    # The negative amount fixed: the next read releases that price and keeps holding the rest, since when they were first held.
    with catalog.engine.begin() as conn:
        conn.execute(text("UPDATE prices SET unit_amount = 700 WHERE lookup_key = 'good_m'"))
    (tmp_path / "again").mkdir()
    again = {r.output_name: r for r in read_catalog(CatalogResource(url=catalog_url), stripe, account=None, staging=tmp_path / "again") if isinstance(r, dg.Output)}
    assert sorted(again["local_prices"].value.frame()["lookup_key"]) == ["good_m", "good_y"]
    with catalog.engine.connect() as conn:
        rows = {(r.kind, r.product_id, r.lookup_key): r for r in conn.execute(select(quarantine))}
    assert sorted(key for key, r in rows.items() if r.released_at is None) == [("price", "bad", "bad_m"), ("product", "bad", None), ("product", "in_fr", None)]
    assert rows[("price", "good", "good_m")].released_at is not None
    assert rows[("price", "bad", "bad_m")].at == first_held["bad_m"]


def test_the_snapshot_lists_every_stripe_product_and_price_active_and_archived_and_says_so(catalog_url, emulator):
    fixtures = [{"id": f"p{i:03d}", "name": f"P{i}", "created": 1_700_000_000 + i * 60, "prices": [
        {"currency": "usd", "unit_amount": 100, "lookup_key": f"p{i:03d}_m", "created": 1_700_000_000 + i * 60},
        {"currency": "usd", "unit_amount": 900, "active": False, "created": 1_700_000_000 + i * 60},
    ] if i < 120 else []} for i in range(250)]  # fmt: skip
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": fixtures}).raise_for_status()
    stripe = StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000)
    context = dg.build_asset_context(resources={"catalog": CatalogResource(url=catalog_url), "stripe": stripe, "policy": ReconPolicy()})
    # Both sides; the catalog here is empty. Each side is a file of the step's own, gone with the
    # step, so it is read as it is yielded (as the IO manager moves it into place then).
    yielded = [dg.Output(y.value.frame(), y.output_name, metadata=y.metadata) if isinstance(y, dg.Output) else y for y in snapshot(context)]
    outputs = {y.output_name: y for y in yielded if isinstance(y, dg.Output)}
    checks = {(y.asset_key.path[-1], y.check_name): y for y in yielded if isinstance(y, dg.AssetCheckResult) and y.asset_key.path[-1].startswith("stripe_")}
    products, prices = outputs["stripe_products"], outputs["stripe_prices"]
    assert set(outputs) == {"local_products", "local_prices", "stripe_products", "stripe_prices"} and outputs["local_products"].value.empty
    assert sorted(products.value["product_id"]) == [f["id"] for f in fixtures]
    assert values(products.metadata)["dagster/row_count"] == 250
    assert len(prices.value) == 240 and int(prices.value["active"].sum()) == 120 and values(prices.metadata)["active"] == 120
    assert len(checks) == 5 and all(check.passed for check in checks.values())
    # Each list says what it cost itself: 3 product pages, 2 + 1 price pages (active, archived);
    # on an account this small the concurrent windows add up to a few per slot (empty windows
    # past the account's beginning, the probe proving it, the last windows split).
    product_requests, price_requests = values(products.metadata)["requests"], values(prices.metadata)["requests"]
    assert 3 <= product_requests <= 3 + 3 * CONCURRENCY and 3 <= price_requests <= 3 + 2 * 3 * CONCURRENCY
    assert values(products.metadata)["requests_per_object"] == round(product_requests / 250, 5)
    fits = values(checks[("stripe_prices", "snapshot_fits_interval")].metadata)
    assert (fits["products"], fits["prices"], fits["interval_s"]) == (250, 240, 3600.0) and fits["bound_s"] < 1


def test_a_catalog_whose_list_outlasts_the_schedules_interval_is_warned_about_with_its_figures():
    """9,500,000 prices at 25 requests/s take 3,800 s to list: longer than an hour between runs."""
    over = fits_interval(2_000_000, 9_500_000, 3_900.0, 25.0, cron_interval_s("0 * * * *"))
    assert not over.passed and over.severity == dg.AssetCheckSeverity.WARN
    assert values(over.metadata)["bound_s"] == 3800.0 and values(over.metadata)["interval_s"] == 3600.0
    assert "3,800 s" in str(over.description) and "RECON_RECONCILE_CRON" in str(over.description) and "Beyond the hour" in str(over.description)
    assert fits_interval(2_000_000, 9_500_000, 3_900.0, 25.0, cron_interval_s("0 */2 * * *")).passed  # every two hours: it fits
    assert cron_interval_s("*/15 * * * *") == 900.0 and cron_interval_s("0 9,17 * * 1-5") == 8 * 3600.0


def test_a_routine_edit_of_a_small_catalog_is_under_the_breakers_floor_and_repaired(catalog_url, emulator):
    """Five products, one renamed: 20 % of the catalog (over the 10 % share) but one object, under the floor of 25."""
    products = [CatalogProduct(id=f"p{i}", name="Renamed" if i == 0 else f"P{i}") for i in range(5)]
    upsert_products(Catalog.open(catalog_url).engine, products)
    local = catalog_rows(*products)
    remote = stripe_products_of(*({"id": f"p{i}", "name": f"P{i}"} for i in range(5)))
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": f"p{i}", "name": f"P{i}", "created": 1_700_000_000} for i in range(5)]}).raise_for_status()
    drift = pd.DataFrame({"product_id": ["p0"], "lookup_key": None, "kind": "field_mismatch", "field": "name", "local_value": "Renamed", "stripe_value": "P0"})
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(),  # 10 % share, floor 25 (RECON_BREAKER_FLOOR's default)
    }
    output, checks = run(catalog_repair, resources, RepairConfig().model_dump(), catalog_drift=drift, local_products=local, stripe_products=remote, **NO_PRICES)
    assert checks["mass_drift_breaker"].passed and values(checks["mass_drift_breaker"].metadata)["floor"] == 25
    assert list(output.value["status"]) == ["applied"] and not values(output.metadata)["breaker_tripped"]


def test_a_dry_run_shows_the_plan_with_each_fields_before_and_after_and_leaves_verification_unevaluated(catalog_url, emulator):
    products = [CatalogProduct(id="p0", name="Renamed", description="x" * 300), CatalogProduct(id="p1", name="P1")]
    upsert_products(Catalog.open(catalog_url).engine, products)
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": f"p{i}", "name": f"P{i}", "created": 1_700_000_000} for i in range(2)]}).raise_for_status()
    drift = pd.DataFrame(
        {"product_id": ["p0", "p0"], "lookup_key": None, "kind": "field_mismatch", "field": ["name", "description"], "local_value": ["Renamed", "x" * 300], "stripe_value": ["P0", None]}
    )
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(),
    }
    remote = stripe_products_of({"id": "p0", "name": "P0"}, {"id": "p1", "name": "P1"})
    output, checks = run(catalog_repair, resources, {"dry_run": True}, catalog_drift=drift, local_products=catalog_rows(*products), stripe_products=remote, **NO_PRICES)
    [change] = output.value["changes"]
    assert change.startswith("name: 'P0' -> 'Renamed'; description: (none) -> 'xxx") and change.endswith("(300 chars)'")  # the drift table holds it whole
    table = values(output.metadata)["actions"]
    assert "name: 'P0' -> 'Renamed'; description: (none) -> 'xxx" in table and "(300 chars)" in table and "x" * 100 not in table
    assert "repair_verified" not in checks and checks["mass_drift_breaker"].passed  # nothing written: not evaluated
    assert httpx.get(f"{emulator.url}/_emulator/stats").json()["endpoints"].get("POST /v1/products/p0", 0) == 0


def test_catalog_repair_above_the_breakers_share_plans_but_writes_nothing(catalog_url, emulator):
    local = catalog_rows(*(CatalogProduct(id=f"new_{i}", name=f"New {i}") for i in range(3)), CatalogProduct(id="kept", name="Kept"))
    remote = stripe_products_of({"id": "kept", "name": "Kept"})
    drift = pd.DataFrame({"product_id": [f"new_{i}" for i in range(3)], "lookup_key": None, "kind": "missing_in_stripe", "field": None, "local_value": None, "stripe_value": None})
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(max_repair_share=0.5, breaker_floor=2),
    }
    output, checks = run(catalog_repair, resources, RepairConfig().model_dump(), catalog_drift=drift, local_products=local, stripe_products=remote, **NO_PRICES)
    assert not checks["mass_drift_breaker"].passed and "3 of 4 products and prices would be written (75.0% > 50%, and more than 2)" in (checks["mass_drift_breaker"].description or "")
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
    with pytest.raises(dg.Failure, match="orphan_policy 'adopt' would add or edit rows of the catalog, but the catalog is your own table 'shop_items'"):
        run(catalog_repair, resources, {"orphan_policy": "adopt"}, catalog_drift=empty.iloc[:0], local_products=empty, stripe_products=stripe_products_of(), **NO_PRICES)


def test_a_misspelled_orphan_policy_in_run_config_fails_the_run_naming_it(catalog_url, emulator):
    resources = {
        "catalog": CatalogResource(url=catalog_url),
        "stripe": StripeResource(api_key="sk_test_assets", api_base=emulator.url, global_rate=1000, endpoint_rate=1000),
        "policy": ReconPolicy(),
    }
    empty = catalog_rows()
    with pytest.raises(dg.Failure, match="orphan_policy='archve' is not one of report, archive, adopt"):
        run(catalog_repair, resources, {"orphan_policy": "archve"}, catalog_drift=empty.iloc[:0], local_products=empty, stripe_products=stripe_products_of(), **NO_PRICES)


def test_one_asset_of_the_snapshot_step_is_materialized_alone(catalog_url, tmp_path):
    """The step serves any subset: the catalog's products alone read the catalog and call no Stripe."""
    upsert_products(Catalog.open(catalog_url).engine, [CatalogProduct(id="solo", name="Solo")])
    stripe = StripeResource(api_key="sk_test_assets", api_base="http://127.0.0.1:9", global_rate=1, endpoint_rate=1)  # nothing listens: not called
    resources = {"catalog": CatalogResource(url=catalog_url), "stripe": stripe, "policy": ReconPolicy(), "io_manager": ParquetIOManager(base_dir=str(tmp_path / "io"))}
    result = dg.materialize([snapshot], selection=["local_products"], resources=resources)
    assert result.success
    assert {e.asset_key.path[-1] for e in result.get_asset_materialization_events()} == {"local_products"}
    assert pd.read_parquet(tmp_path / "io" / "local_products.parquet")["product_id"].tolist() == ["solo"]  # the step's file, moved into place
    assert sorted(p.name for p in (tmp_path / "io").iterdir()) == ["local_products.parquet"]  # nothing else kept
    assert {e.check_name for e in result.get_asset_check_evaluations()} == {"ids_unique", "no_quarantined_rows"}
