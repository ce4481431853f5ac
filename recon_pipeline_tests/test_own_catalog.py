"""A user's own product table, by column mapping or by query, on SQLite, PostgreSQL and MariaDB."""

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
from recon_pipeline.reconcile import local_frame
from recon_pipeline.runs import run_job
from recon_pipeline.settings import Settings, SettingsError
from recon_pipeline.sync.inbox import EventSource, InboxApplier, store_event
from recon_pipeline.testing import event, product_obj
from recon_pipeline_tests.conftest import ADMIN_URL as POSTGRES_ADMIN_URL

MARIADB_ADMIN_URL = "mysql+pymysql://root@127.0.0.1:3306/test"
MAPPING = "id=sku,name=title,description=blurb,active=is_live,metadata=attrs,unit_amount=price_cents,currency=curr,recurring_interval=billing,updated_at=changed_at"
ROWS = [
    ("A-1", "Café Pro ✓", "For teams", 1, '{"tier": "2"}', 1500, "USD", "month", "2026-11-24 12:00:00"),
    ("A-2", "Basic", None, 0, None, None, None, None, "2026-11-24 12:30:00"),
    ("A-3", "東京 Seat", "", 1, "{}", 990, "eur", None, "2026-11-24 13:00:00"),
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
    yield url
    engine.dispose()
    if drop:
        with drop[0].connect() as conn:
            conn.execute(text(drop[1]))
        drop[0].dispose()


def test_a_users_table_is_read_through_a_column_mapping(users_database):
    source = CatalogSource.from_settings("shop_items", MAPPING, None)
    frame = local_frame(Catalog(make_engine(users_database), source).rows())
    assert frame["product_id"].tolist() == ["A-1", "A-2", "A-3"]
    first = frame.iloc[0]
    assert (first["name"], first["description"], first["metadata"], first["unit_amount"], first["currency"], first["interval"]) == (
        "Café Pro ✓", "For teams", '{"tier":"2"}', 1500, "usd", "month",
    )
    assert frame["active"].tolist() == [True, False, True]
    assert frame["unit_amount"].isna().tolist() == [False, True, False]
    only = Catalog(make_engine(users_database), source).rows(ids=["A-3"])
    assert only["name"].tolist() == ["東京 Seat"]


def test_a_users_catalog_is_read_through_a_query(users_database):
    query = "SELECT sku AS id, title AS name, price_cents AS unit_amount, curr AS currency, is_live AS active FROM shop_items WHERE is_live = 1"
    source = CatalogSource.from_settings(None, None, query)
    catalog = Catalog(make_engine(users_database), source)
    assert catalog.rows()["id"].tolist() == ["A-1", "A-3"]
    assert catalog.rows(ids=["A-3", "nope"])["id"].tolist() == ["A-3"]
    # The fields the query leaves out take their defaults, all the way to the canonical frame.
    frame = catalog.valid_frame()
    assert frame["product_id"].tolist() == ["A-1", "A-3"] and (frame["description"] == "").all() and frame["interval"].tolist() == ["", ""]


def test_the_readmes_catalog_query_reads_as_written(users_database):
    """RECON_CATALOG_QUERY as the README shows it (its table's columns renamed to this test's)."""
    query = "SELECT sku AS id, title AS name, price_cents AS unit_amount, 'usd' AS currency FROM shop_items WHERE NOT is_live = 0"
    frame = Catalog(make_engine(users_database), CatalogSource.from_settings(None, None, query)).valid_frame()
    assert frame["product_id"].tolist() == ["A-1", "A-3"] and frame["active"].all()


def test_a_partial_mapping_fills_the_optional_fields_with_defaults(users_database):
    source = CatalogSource.from_settings("shop_items", "id=sku,name=title", None)
    frame = local_frame(Catalog(make_engine(users_database), source).rows())
    assert frame["active"].all() and (frame["metadata"] == "{}").all() and frame["unit_amount"].isna().all()


@pytest.mark.parametrize(
    "env, message",
    [
        ({"RECON_CATALOG_TABLE": "shop_items", "RECON_CATALOG_COLUMNS": "name=title"}, "must map id"),
        ({"RECON_CATALOG_TABLE": "shop_items", "RECON_CATALOG_COLUMNS": "id=sku,name=title,colour=hue"}, "unknown field 'colour'"),
        ({"RECON_CATALOG_TABLE": "shop items; drop", "RECON_CATALOG_COLUMNS": "id=sku,name=title"}, "is not a table name"),
        ({"RECON_CATALOG_TABLE": "t", "RECON_CATALOG_QUERY": "SELECT 1"}, "not both"),
        ({"RECON_CATALOG_QUERY": "DELETE FROM shop_items"}, "must be a SELECT"),
        ({"RECON_CATALOG_COLUMNS": "id=sku,name=title"}, "RECON_CATALOG_TABLE is not"),
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
            ("A-1", "field_mismatch"), ("A-2", "missing_in_stripe"), ("A-3", "missing_in_stripe"),
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
