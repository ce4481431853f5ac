"""A user's own product and price tables, by column mapping or by query, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import uuid
from pathlib import Path

import dagster as dg
import httpx
import pytest
from sqlalchemy import create_engine, func, select, text

from recon_pipeline.catalog import Catalog, CatalogReadOnly, init_schema, make_engine
from recon_pipeline.catalog.schema import audit, outbox, products
from recon_pipeline.catalog.source import CatalogSource
from recon_pipeline.policies import ConflictPolicy
from recon_pipeline.reconcile import local_frame, local_price_frame
from recon_pipeline.reconcile.frames import catalog_frames
from recon_pipeline.runs import run_job
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.sync.inbox import EventSource, InboxApplier, store_event
from recon_pipeline.testing import event, product_obj
from recon_pipeline_tests.conftest import ADMIN_URL as POSTGRES_ADMIN_URL

MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
MAPPING = "id=sku,name=title,description=blurb,active=is_live,metadata=attrs,unit_amount=price_cents,currency=curr,recurring_interval=billing,updated_at=changed_at"
ROWS: list[tuple] = [
    ("A-1", "Café Pro ✓", "For teams", 1, '{"tier": "2"}', 1500, "USD", "month", "2026-11-24 12:00:00"),
    ("A-2", "Basic", None, 0, None, None, None, None, "2026-11-24 12:30:00"),
    ("A-3", "東京 Seat", "", 1, "{}", 990, "eur", None, "2026-11-24 13:00:00"),
]
# The user's own price table: several prices per product, tiers as JSON text.
PRICE_MAPPING = "lookup_key=code,product_id=sku,currency=curr,unit_amount=cents,recurring_interval=every,billing_scheme=scheme,tiers_mode=mode,tiers=tiers_json,active=live"
PRICE_ROWS: list[tuple] = [
    ("a1_monthly", "A-1", "usd", 1500, "month", "per_unit", None, None, 1),
    ("a1_yearly", "A-1", "usd", 15000, "year", "per_unit", None, None, 1),
    ("a3_seats", "A-3", "eur", None, "month", "tiered", "graduated", '[{"up_to": 10, "unit_amount": 500}, {"up_to": "inf", "unit_amount": 400}]', 1),
    ("a3_old", "A-3", "eur", 100, None, "per_unit", None, None, 0),
]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "mariadb"])
def users_database(request, tmp_path: Path):
    """A database holding the user's own `shop_items` table (their schema, not ours)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'shop.db'}"
        drop = None
    else:
        name = f"recon_own_{uuid.uuid4().hex[:10]}"
        admin_url = POSTGRES_ADMIN_URL if request.param == "postgresql" else MARIADB_ADMIN_URL
        admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        force = " WITH (FORCE)" if request.param == "postgresql" else ""
        drop = (admin, f"DROP DATABASE IF EXISTS {name}{force}")
    engine = make_engine(url)
    with engine.begin() as conn:
        conn.execute(text(
            "CREATE TABLE shop_items (sku VARCHAR(32) PRIMARY KEY, title VARCHAR(200) NOT NULL, blurb TEXT, is_live INTEGER NOT NULL, "
            "attrs TEXT, price_cents INTEGER, curr VARCHAR(3), billing VARCHAR(8), changed_at TIMESTAMP NULL)"
        ))
        for row in ROWS:
            conn.execute(text("INSERT INTO shop_items VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"), dict(zip("abcdefghi", row, strict=True)))
        conn.execute(text(
            "CREATE TABLE shop_prices (code VARCHAR(64) PRIMARY KEY, sku VARCHAR(32) NOT NULL, curr VARCHAR(3) NOT NULL, cents INTEGER, "
            "every VARCHAR(8), scheme VARCHAR(16) NOT NULL, mode VARCHAR(16), tiers_json TEXT, live INTEGER NOT NULL)"
        ))
        for row in PRICE_ROWS:
            conn.execute(text("INSERT INTO shop_prices VALUES (:a, :b, :c, :d, :e, :f, :g, :h, :i)"), dict(zip("abcdefghi", row, strict=True)))
    yield url
    engine.dispose()
    if drop:
        with drop[0].connect() as conn:
            conn.execute(text(drop[1]))
        drop[0].dispose()


def test_a_users_table_is_read_through_a_column_mapping(users_database):
    source = CatalogSource.from_settings("shop_items", MAPPING, None)
    catalog = Catalog(make_engine(users_database), source)
    frame = local_frame(catalog.rows())
    assert frame["product_id"].tolist() == ["A-1", "A-2", "A-3"]
    first = frame.iloc[0]
    assert (first["name"], first["description"], first["metadata"]) == ("Café Pro ✓", "For teams", '{"tier":"2"}')
    assert frame["active"].tolist() == [True, False, True]
    # One price per product in the product table: each is the product's `<id>:default`.
    assert frame["default_price"].tolist() == ["A-1:default", "", "A-3:default"]
    prices = local_price_frame(catalog.price_rows()).set_index("lookup_key")
    assert prices.index.tolist() == ["A-1:default", "A-3:default"]
    assert prices.loc["A-1:default", ["product_id", "unit_amount", "currency", "recurring_interval", "recurring_interval_count"]].tolist() == ["A-1", "1500", "usd", "month", "1"]
    assert prices.loc["A-3:default", ["unit_amount", "currency", "recurring_interval"]].tolist() == ["990", "eur", ""]
    only = catalog.rows(ids=["A-3"])
    assert only["name"].tolist() == ["東京 Seat"]


def test_a_users_price_table_is_read_through_its_column_mapping(users_database):
    source = CatalogSource.from_settings("shop_items", "id=sku,name=title,active=is_live", None, "shop_prices", PRICE_MAPPING, None)
    catalog = Catalog(make_engine(users_database), source)
    catalog.check_source()
    _, prices = catalog_frames(catalog)
    prices = prices.set_index("lookup_key")
    assert prices.index.tolist() == ["a1_monthly", "a1_yearly", "a3_old", "a3_seats"]
    assert prices.loc["a3_seats", "tiers"] == '[{"flat_amount":"","unit_amount":"500","up_to":"10"},{"flat_amount":"","unit_amount":"400","up_to":"inf"}]'
    assert prices["active"].tolist() == [True, True, False, True]
    assert catalog.price_rows(["A-1"])["lookup_key"].tolist() == ["a1_monthly", "a1_yearly"]


def test_a_users_prices_are_read_through_a_query(users_database):
    prices_query = "SELECT code AS lookup_key, sku AS product_id, curr AS currency, cents AS unit_amount, every AS recurring_interval FROM shop_prices WHERE scheme = 'per_unit'"
    source = CatalogSource.from_settings("shop_items", "id=sku,name=title", None, None, None, prices_query)
    _, prices = catalog_frames(Catalog(make_engine(users_database), source))
    assert prices["lookup_key"].tolist() == ["a1_monthly", "a1_yearly", "a3_old"] and prices["active"].all()


def test_a_users_catalog_is_read_through_a_query(users_database):
    query = "SELECT sku AS id, title AS name, price_cents AS unit_amount, curr AS currency, is_live AS active FROM shop_items WHERE is_live = 1"
    source = CatalogSource.from_settings(None, None, query)
    catalog = Catalog(make_engine(users_database), source)
    assert catalog.rows()["id"].tolist() == ["A-1", "A-3"]
    assert catalog.rows(ids=["A-3", "nope"])["id"].tolist() == ["A-3"]
    # The fields the query leaves out take their defaults, all the way to the canonical frames.
    frame, prices = catalog_frames(catalog)
    assert frame["product_id"].tolist() == ["A-1", "A-3"] and (frame["description"] == "").all()
    assert prices["recurring_interval"].tolist() == ["", ""] and prices["lookup_key"].tolist() == ["A-1:default", "A-3:default"]


def test_the_readmes_catalog_query_reads_as_written(users_database):
    """RECON_CATALOG_QUERY as the README shows it (its table's columns renamed to this test's)."""
    query = "SELECT sku AS id, title AS name, price_cents AS unit_amount, 'usd' AS currency FROM shop_items WHERE NOT is_live = 0"
    frame, prices = catalog_frames(Catalog(make_engine(users_database), CatalogSource.from_settings(None, None, query)))
    assert frame["product_id"].tolist() == ["A-1", "A-3"] and frame["active"].all()
    assert prices["currency"].tolist() == ["usd", "usd"]


def test_a_partial_mapping_fills_the_optional_fields_with_defaults(users_database):
    source = CatalogSource.from_settings("shop_items", "id=sku,name=title", None)
    catalog = Catalog(make_engine(users_database), source)
    frame = local_frame(catalog.rows())
    assert frame["active"].all() and (frame["metadata"] == "{}").all() and (frame["default_price"] == "").all()
    assert catalog.price_rows().empty


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RECON_CATALOG_TABLE": "shop_items", "RECON_CATALOG_COLUMNS": "name=title"}, "must map id"),
        ({"RECON_CATALOG_TABLE": "shop_items", "RECON_CATALOG_COLUMNS": "id=sku,name=title,colour=hue"}, "unknown field 'colour'"),
        ({"RECON_CATALOG_TABLE": "shop items; drop", "RECON_CATALOG_COLUMNS": "id=sku,name=title"}, "is not a table name"),
        ({"RECON_CATALOG_TABLE": "t", "RECON_CATALOG_QUERY": "SELECT 1"}, "not both"),
        ({"RECON_CATALOG_QUERY": "DELETE FROM shop_items"}, "must be a SELECT"),
        ({"RECON_CATALOG_COLUMNS": "id=sku,name=title"}, "RECON_CATALOG_TABLE is not"),
        ({"RECON_PRICES_TABLE": "shop_prices", "RECON_PRICES_COLUMNS": "lookup_key=code,product_id=sku,currency=curr"}, "set RECON_CATALOG_TABLE or RECON_CATALOG_QUERY too"),
        ({"RECON_CATALOG_TABLE": "t", "RECON_CATALOG_COLUMNS": "id=sku,name=title", "RECON_PRICES_TABLE": "p",
          "RECON_PRICES_COLUMNS": "product_id=sku,currency=curr"}, "RECON_PRICES_COLUMNS must map lookup_key"),
        ({"RECON_CATALOG_QUERY": "SELECT 1", "RECON_PRICES_QUERY": "UPDATE p SET x = 1"}, "RECON_PRICES_QUERY='UPDATE p SET x = 1' must be a SELECT"),
    ],
)
def test_a_bad_catalog_source_fails_fast_naming_the_setting(env, message):
    with pytest.raises(SettingsError, match=message):
        Settings.from_env(env)


def test_reconcile_and_repair_a_users_own_table(users_database, emulator, dagster_home, monkeypatch, tmp_path):
    monkeypatch.setenv("RECON_CATALOG_URL", users_database)
    monkeypatch.setenv("RECON_CATALOG_TABLE", "shop_items")
    monkeypatch.setenv("RECON_CATALOG_COLUMNS", MAPPING)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    init_schema(make_engine(users_database))  # our durable tables beside theirs; shop_items is untouched
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": "A-1", "name": "Old name", "created": 1_700_000_000}]}).raise_for_status()
    with dg.DagsterInstance.get() as instance:
        drift = run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift")
        assert sorted(set(zip(drift["product_id"], drift["kind"], strict=True))) == [
            ("A-1", "field_mismatch"), ("A-1", "price_missing_in_stripe"), ("A-2", "missing_in_stripe"), ("A-3", "missing_in_stripe"), ("A-3", "price_missing_in_stripe"),
        ]
        assert run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"max_write_share": 1.0}}}}, instance=instance).success
        assert run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift").empty
        adopt = run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"orphan_policy": "adopt"}}}}, instance=instance)
        assert not adopt.success


def test_stripe_edits_never_write_into_a_users_table(users_database):
    """A read-only catalog refuses a policy that would write into it, and under local_wins a
    Stripe edit is read against the user's table and put back through the outbox."""
    catalog = Catalog(make_engine(users_database), CatalogSource.from_settings("shop_items", MAPPING, None))
    init_schema(catalog.engine)
    for policy in (ConflictPolicy.STRIPE_WINS, ConflictPolicy.LATEST_WINS):
        with pytest.raises(CatalogReadOnly, match="only reads"):
            InboxApplier(catalog, policy)
    renamed = event("evt_1", "product.updated", product_obj("A-1", "Renamed in Stripe", 1_700_000_000))
    renamed["data"]["previous_attributes"] = {"name": "Café Pro ✓"}
    store_event(catalog.engine, renamed, EventSource.WEBHOOK)
    result = InboxApplier(catalog, ConflictPolicy.LOCAL_WINS).apply_pending()
    assert (result.applied, result.conflicts) == (1, 1)
    with catalog.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(products)).scalar_one() == 0
        assert conn.execute(select(outbox.c.product_id, outbox.c.change)).all() == [("A-1", "revert")]
        assert conn.execute(select(audit.c.decision)).scalars().all() == ["conflict_local_wins"]
    assert catalog.rows(ids=["A-1"])["name"].tolist() == ["Café Pro ✓"]
