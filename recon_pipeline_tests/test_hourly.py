"""Hourly partitions and backfills: boundaries, UTC, empty hours, 48 hours in one run."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import httpx
import pytest
from sqlalchemy import update

from recon_pipeline.backfill import catalog_changes, hour_key
from recon_pipeline.catalog import Catalog, CatalogProduct, upsert_products
from recon_pipeline.catalog.schema import products
from recon_pipeline.definitions import build_defs
from recon_pipeline.defs.hourly import hourly_partitions
from recon_pipeline.runs import latest_metadata, run_job
from recon_pipeline.settings import DEFAULT_PARTITIONS_START
from recon_pipeline.testing import priced_fixture, seed_priced

UTC = dt.UTC
HOURLY = hourly_partitions(DEFAULT_PARTITIONS_START)


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_an_edit_at_12_59_59_999_is_in_12_and_one_at_13_00_in_13(sqlite_url):
    catalog = Catalog.open(sqlite_url)
    engine = catalog.engine
    upsert_products(engine, [CatalogProduct(id="late", name="L"), CatalogProduct(id="on_the_hour", name="O")])
    with engine.begin() as conn:
        conn.execute(update(products).where(products.c.id == "late").values(updated_at=at("2026-11-24T12:59:59.999000")))
        conn.execute(update(products).where(products.c.id == "on_the_hour").values(updated_at=at("2026-11-24T13:00:00")))
    twelve = catalog_changes(catalog, at("2026-11-24T12:00:00"), at("2026-11-24T13:00:00"))
    thirteen = catalog_changes(catalog, at("2026-11-24T13:00:00"), at("2026-11-24T14:00:00"))
    assert twelve["product_id"].tolist() == ["late"] and twelve["hour"].tolist() == ["2026-11-24-12:00"]
    assert thirteen["product_id"].tolist() == ["on_the_hour"] and thirteen["hour"].tolist() == ["2026-11-24-13:00"]
    assert hour_key(dt.datetime(2026, 11, 24, 14, 30, tzinfo=dt.timezone(dt.timedelta(hours=2)))) == "2026-11-24-12:00"


@pytest.mark.parametrize("day", ["2026-03-29", "2026-10-25", "2026-11-01"])
def test_partitions_are_utc_hours_with_no_daylight_saving_gaps(day):
    keys = HOURLY.get_partition_keys_in_range(dg.PartitionKeyRange(f"{day}-00:00", f"{day}-23:00"))
    assert len(keys) == 24 and keys[2] == f"{day}-02:00"


def set_updated_at(engine, product_id: str, moment: dt.datetime) -> None:
    with engine.begin() as conn:
        conn.execute(update(products).where(products.c.id == product_id).values(updated_at=moment))


@pytest.fixture
def hourly_setup(tmp_path: Path, emulator, dagster_home, monkeypatch):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    return Catalog.open(url).engine, emulator


def run_range(first: str, last: str, instance) -> dg.ExecuteInProcessResult:
    job = build_defs().resolve_job_def("backfill_hours")
    return job.execute_in_process(
        instance=instance,
        tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        raise_on_error=False,
    )


def test_an_empty_hour_is_stored_as_empty_and_loads(hourly_setup):
    engine, _ = hourly_setup
    key = hour_key(dt.datetime.now(UTC) - dt.timedelta(hours=3))
    with dg.DagsterInstance.get() as instance:
        result = run_range(key, key, instance)
        assert result.success
        stored = instance.get_materialized_partitions(dg.AssetKey("hourly_drift"))
        assert stored == {key}
    from recon_pipeline.defs.partition_store import PartitionStore

    frame = PartitionStore(url=str(engine.url)).load_input(dg.build_input_context(asset_key=dg.AssetKey("hourly_drift"), partition_key=key, asset_partitions_def=HOURLY))
    assert frame.empty and "hour" in frame.columns


def test_a_48_hour_backfill_runs_once_and_repairs_what_those_hours_touched(hourly_setup):
    engine, emulator = hourly_setup
    now = dt.datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first_hour = now - dt.timedelta(hours=48)
    ids = [f"sku_{i:02d}" for i in range(48)]
    seed_priced(Catalog(engine), ids, amount=100, name="{id} catalog")
    for n, product_id in enumerate(ids):  # one catalog change in each of the 48 hours
        set_updated_at(engine, product_id, first_hour + dt.timedelta(hours=n, minutes=30))
    stripe_side = [priced_fixture(i, f"{i} {'stale' if n % 4 == 0 else 'catalog'}", amount=100) for n, i in enumerate(ids)]
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": stripe_side}).raise_for_status()
    keys = [hour_key(first_hour + dt.timedelta(hours=n)) for n in range(48)]
    with dg.DagsterInstance.get() as instance:
        result = run_range(keys[0], keys[-1], instance)
        assert result.success
        assert len(instance.get_runs()) == 1
        for asset in ("catalog_changes_hourly", "stripe_events_hourly", "hourly_drift", "hourly_repair"):
            assert instance.get_materialized_partitions(dg.AssetKey(asset)) == set(keys), asset
        drift_metadata = latest_metadata(instance, "hourly_drift")
        assert drift_metadata["products_with_drift"] == 12 and drift_metadata["mode"] == "touched"
        after = run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift")
    assert after.empty


def test_hours_past_the_event_retention_warn_and_reconcile_everything(hourly_setup):
    engine, _ = hourly_setup
    upsert_products(engine, [CatalogProduct(id="sku_old", name="Old")])
    old = hour_key(dt.datetime.now(UTC) - dt.timedelta(days=31))
    with dg.DagsterInstance.get() as instance:
        result = run_range(old, old, instance)
        assert result.success
        [check] = [e for e in result.get_asset_check_evaluations() if e.check_name == "within_event_retention"]
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        metadata = latest_metadata(instance, "hourly_drift")
        assert metadata["mode"] == "full" and metadata["drift_rows"] == 1  # sku_old is missing in Stripe
