"""The reconciliation in Dagster end to end: seed drift, reconcile, repair, verify.

Real parts only: the emulator over HTTP, the catalog on SQLite and on PostgreSQL, and a
Dagster instance in a temp DAGSTER_HOME (default SQLite storage, or dagster-postgres).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from recon_pipeline.catalog import make_engine
from recon_pipeline.demo import plan_demo, seed_demo, unmanaged_prices
from recon_pipeline.reconcile import PRICE_ORPHAN_IN_STRIPE
from recon_pipeline.runs import drift_counts, latest_metadata, run_job


def check_results(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {f"{e.asset_key.to_user_string()}.{e.check_name}": e.passed for e in result.get_asset_check_evaluations()}


def seeded(catalog_url: str, emulator_url: str, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RECON_CATALOG_URL", catalog_url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator_url)
    data = plan_demo(n_products=1000, seed=11)
    seed_demo(make_engine(catalog_url), emulator_url, data)
    return data


def reconcile_repair_verify(data, instance: dg.DagsterInstance, emulator_url: str) -> None:
    first = run_job("reconcile_catalog", instance=instance)
    drift = first.asset_value("catalog_drift")
    found = drift_counts(drift)
    for kind, count in data.expected_by_kind.items():
        assert found[kind] == count, kind
    for kind_field in (k for k in data.expected if "/" in k):  # e.g. price_field_mismatch/tiers
        assert found[kind_field] == data.expected[kind_field], kind_field
    checks = check_results(first)
    assert checks == {
        "local_products.ids_unique": True,
        "local_products.no_quarantined_rows": True,
        "local_prices.ids_unique": True,
        "local_prices.no_quarantined_rows": True,
        "stripe_products.snapshot_complete": True,
        "stripe_products.ids_unique": True,
        "stripe_prices.snapshot_complete": True,
        "stripe_prices.ids_unique": True,
        "stripe_prices.snapshot_fits_interval": True,
        "catalog_drift.drift_rate_below_threshold": False,
    }
    # The blocking drift check fails the run, after catalog_drift is stored.
    assert not first.success
    metadata = latest_metadata(instance, "catalog_drift")
    assert metadata["drift/total"] == data.expected_by_kind["total"]
    assert metadata["drift/missing_in_stripe"] == data.expected["missing_in_stripe"]

    repair = run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive"}}}}, instance=instance)
    assert repair.success
    assert check_results(repair) == {
        "catalog_repair.repair_verified": True,
        "catalog_repair.mass_drift_breaker": True,
        "catalog_repair.dead_letters_empty": True,
    }

    second = run_job("reconcile_catalog", instance=instance)
    assert second.success
    # What is left is the unmanaged price made in the dashboard: reported, never touched.
    left = second.asset_value("catalog_drift")
    assert list(left["kind"]) == [PRICE_ORPHAN_IN_STRIPE] * len(data.unmanaged)
    assert all(p["active"] for p in unmanaged_prices(emulator_url, data))
    assert all(check_results(second).values())


def test_reconcile_and_repair_on_sqlite(tmp_path: Path, emulator, dagster_home, monkeypatch):
    data = seeded(f"sqlite:///{tmp_path / 'catalog.db'}", emulator.url, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        reconcile_repair_verify(data, instance, emulator.url)


@pytest.mark.postgres
def test_reconcile_and_repair_with_catalog_and_dagster_storage_on_postgresql(postgres_url, dagster_postgres_url, dagster_home: Path, emulator, monkeypatch):
    (dagster_home / "dagster.yaml").write_text(
        f"telemetry:\n  enabled: false\nstorage:\n  postgres:\n    postgres_url: {dagster_postgres_url}\n"
    )
    data = seeded(postgres_url, emulator.url, monkeypatch)
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        reconcile_repair_verify(data, instance, emulator.url)
        assert len(instance.get_runs()) == 3
