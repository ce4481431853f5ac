"""Frames cross steps as Parquet, and every drift row lands in `drift_history`, queryable as the README shows."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import dagster as dg
import httpx
import pandas as pd
import pytest
from sqlalchemy import func, select, text, update

from recon_pipeline.catalog import Catalog
from recon_pipeline.catalog.history import append_drift
from recon_pipeline.catalog.schema import drift_history
from recon_pipeline.runs import run_job
from recon_pipeline.testing import priced_fixture, seed_priced

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_sql(dialect: str) -> str:
    """The README's drift-history query for a database (`<!-- drift-history-sql: DIALECT -->` blocks)."""
    [query] = re.findall(rf"<!-- drift-history-sql: {dialect} -->\n```sql\n(.*?)```", README.read_text(), re.S)
    return query


@pytest.fixture
def reconciled_twice(tmp_path: Path, emulator, dagster_home, monkeypatch):
    """sku_1 drifted in both reconciliations, sku_2 only in the first: the catalog's URL and the instance."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    monkeypatch.setenv("RECON_EXECUTOR", "multiprocess")
    ids = [f"sku_{i}" for i in range(1, 6)]
    seed_priced(Catalog.open(url), ids)
    fixtures = [priced_fixture(i, f"{i} v0" if i not in ("sku_1", "sku_2") else "renamed in the dashboard") for i in ids]
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": fixtures}).raise_for_status()
    with dg.DagsterInstance.get() as instance:
        first = run_job("reconcile_catalog", instance=instance)
        httpx.post(f"{emulator.url}/v1/products/sku_2", data={"name": "sku_2 v0"}, auth=("sk_test_emulator", "")).raise_for_status()
        second = run_job("reconcile_catalog", instance=instance)
        yield url, instance, first, second


def test_steps_hand_each_other_parquet_files_not_pickles(reconciled_twice, dagster_home):
    _, instance, _first, _ = reconciled_twice
    storage = Path(instance.storage_directory())
    assert sorted(p.name for p in storage.glob("*.parquet")) == ["catalog_drift.parquet", "local_prices.parquet", "local_products.parquet", "stripe_prices.parquet", "stripe_products.parquet"]
    assert not [p for p in storage.rglob("*") if p.is_file() and p.suffix == "" and p.parent == storage]  # no pickles beside them
    drift = pd.read_parquet(storage / "catalog_drift.parquet")
    assert list(drift["product_id"]) == ["sku_1"]  # the second run's, as any tool reads it


def test_every_reconciliation_appends_its_drift_to_drift_history(reconciled_twice):
    url, instance, first, second = reconciled_twice
    engine = Catalog.open(url).engine
    with engine.connect() as conn:
        rows = conn.execute(select(drift_history.c.run_id, drift_history.c.product_id, drift_history.c.kind, drift_history.c.field, drift_history.c.stripe_value)).all()
    assert sorted(rows) == sorted(
        [
            (first.run_id, "sku_1", "field_mismatch", "name", "renamed in the dashboard"),
            (first.run_id, "sku_2", "field_mismatch", "name", "renamed in the dashboard"),
            (second.run_id, "sku_1", "field_mismatch", "name", "renamed in the dashboard"),
        ]
    )
    materialization = instance.get_latest_materialization_event(dg.AssetKey("catalog_drift")).asset_materialization
    assert materialization.metadata["dagster/row_count"].value == 1
    assert [column.name for column in materialization.metadata["dagster/column_schema"].schema.columns] == ["product_id", "lookup_key", "kind", "field", "local_value", "stripe_value"]


def test_the_readmes_query_says_what_drifted_in_7_days_and_for_how_long(reconciled_twice):
    url, _, _, _ = reconciled_twice
    engine = Catalog.open(url).engine
    with engine.begin() as conn:  # the first reconciliation two hours earlier, a row of 10 days ago beside it
        first_run = conn.execute(select(func.min(drift_history.c.observed_at))).scalar_one()
        conn.execute(update(drift_history).where(drift_history.c.observed_at == first_run).values(observed_at=first_run - dt.timedelta(hours=2)))
    append_drift(
        engine,
        pd.DataFrame([{"product_id": "sku_old", "lookup_key": None, "kind": "orphan_in_stripe", "field": None, "local_value": None, "stripe_value": None}]),
        run_id="old",
        account="default",
        observed_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=10),
        keep_days=90,
    )
    with engine.connect() as conn:
        found = {row.product_id: row for row in conn.execute(text(readme_sql("sqlite")))}
    assert set(found) == {"sku_1", "sku_2"}  # sku_old is older than 7 days
    assert found["sku_1"].reconciliations == 2 and 1.9 < found["sku_1"].hours_drifted < 2.1
    assert found["sku_2"].reconciliations == 1 and found["sku_2"].hours_drifted == 0


@pytest.mark.postgres
def test_the_readmes_postgresql_query_runs_on_postgresql(postgres_url):
    from recon_pipeline.catalog import init_schema, make_engine

    engine = make_engine(postgres_url)
    init_schema(engine)
    now = dt.datetime.now(dt.UTC)
    drift = pd.DataFrame([{"product_id": "sku_1", "lookup_key": "sku_1:default", "kind": "price_field_mismatch", "field": "nickname", "local_value": "a", "stripe_value": 5}])
    append_drift(engine, drift, run_id="r1", account="default", observed_at=now - dt.timedelta(hours=3), keep_days=90)
    append_drift(engine, drift, run_id="r2", account="default", observed_at=now, keep_days=90)
    with engine.connect() as conn:
        [row] = conn.execute(text(readme_sql("postgresql"))).all()
    assert row.product_id == "sku_1" and row.reconciliations == 2 and 2.9 < float(row.hours_drifted) < 3.1


def test_rows_older_than_the_retention_are_deleted_as_new_ones_arrive(sqlite_url):
    engine = Catalog.open(sqlite_url).engine
    row = pd.DataFrame([{"product_id": "p", "lookup_key": None, "kind": "missing_in_stripe", "field": None, "local_value": None, "stripe_value": None}])
    now = dt.datetime.now(dt.UTC)
    append_drift(engine, row, run_id="old", account="default", observed_at=now - dt.timedelta(days=3), keep_days=2)
    append_drift(engine, row, run_id="new", account="default", observed_at=now, keep_days=2)
    with engine.connect() as conn:
        assert [r.run_id for r in conn.execute(select(drift_history.c.run_id))] == ["new"]
