"""Repair under faults: 429 bursts, 500s, latency, SIGKILL mid-run, the breaker, dead letters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import httpx
import pytest
from sqlalchemy import func, select

from recon_pipeline.catalog import Catalog, CatalogProduct, make_engine, upsert_products
from recon_pipeline.catalog.schema import dead_letter, sync_ledger
from recon_pipeline.demo import DemoData, plan_demo, seed_demo, unmanaged_prices
from recon_pipeline.reconcile import PRICE_ORPHAN_IN_STRIPE
from recon_pipeline.repair.replay import replay_dead_letters
from recon_pipeline.runs import latest_metadata, run_job
from recon_pipeline.stripe_api import StripeGateway
from recon_pipeline.testing import assert_no_duplicates, wait_until

REPAIR_ARCHIVE = {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive"}}}}


@pytest.fixture
def seeded(tmp_path: Path, emulator, dagster_home, monkeypatch):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    data = plan_demo(n_products=1000, seed=5)
    seed_demo(make_engine(url), emulator.url, data)
    return url, data


def set_faults(emulator, **faults) -> None:
    httpx.post(f"{emulator.url}/_emulator/faults", json=faults, timeout=5).raise_for_status()


def drift_after(instance) -> int:
    """Drift rows a reconciliation finds, but for the dashboard-made (unmanaged) prices of
    the demo, which repair reports and leaves alone."""
    drift = run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift")
    return int((drift["kind"] != PRICE_ORPHAN_IN_STRIPE).sum())


def assert_clean(emulator, data: DemoData) -> None:
    """No duplicate in Stripe, and the unmanaged prices still active, untouched."""
    unmanaged = unmanaged_prices(emulator.url, data)
    assert unmanaged and all(p["active"] for p in unmanaged)
    assert_no_duplicates(emulator.url, unmanaged=[p["id"] for p in unmanaged])


def repair_through(emulator, data: DemoData, **faults) -> None:
    """Reconcile, then repair with the faults on: it succeeds after retries, nothing dead; then
    with the faults off a reconciliation finds no drift and Stripe holds no duplicate."""
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance)
        set_faults(emulator, **faults)
        repair = run_job("repair_catalog", REPAIR_ARCHIVE, instance=instance)
        assert repair.success
        metadata = latest_metadata(instance, "catalog_repair")
        assert metadata["retries"] > 0 and metadata["dead_letters"] == 0
        emulator.faults.clear()
        assert drift_after(instance) == 0
    assert_clean(emulator, data)


def test_repair_converges_through_429_bursts_500s_and_latency(seeded, emulator, monkeypatch):
    url, data = seeded
    # The client believes the account allows 12 requests/s, Stripe allows 8: bursts of 429s.
    monkeypatch.setenv("RECON_STRIPE_RATE_LIMIT", "12")
    repair_through(emulator, data, rate_limit=8, failure_rate=0.05, latency_ms=20)
    engine = make_engine(url)
    with engine.connect() as conn:
        ledger = conn.execute(select(sync_ledger.c.status, func.count()).group_by(sync_ledger.c.status)).all()
    # Every write is in the ledger, and every one of them finally succeeded.
    assert dict(ledger).keys() == {200} and dict(ledger)[200] >= data.expected_by_kind["total"] - data.expected["orphan_in_stripe"] - data.expected["price_orphan_in_stripe"]


def test_repair_converges_through_slow_and_dropped_connections(seeded, emulator, monkeypatch):
    _, data = seeded
    # A fifth of the answers never come (cut before or after the work), a tenth take longer than the client waits.
    monkeypatch.setenv("RECON_STRIPE_TIMEOUT_S", "0.5")
    repair_through(emulator, data, drop_rate=0.2, slow_rate=0.1, slow_ms=1200)
    stats = httpx.get(f"{emulator.url}/_emulator/stats", timeout=5).json()
    assert stats["dropped_connections"] > 0 and stats["slow_requests"] > 0


REPAIR_SCRIPT = """
import dagster as dg
from recon_pipeline.runs import run_job
with dg.DagsterInstance.get() as instance:
    run_job("repair_catalog", {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive", "concurrency": 2}}}}, instance=instance)
"""


def writes_started(url: str) -> int:
    with make_engine(url).connect() as conn:
        return conn.execute(select(func.count()).select_from(sync_ledger)).scalar_one()


@pytest.mark.parametrize("kill_after_writes", [10, 50])
def test_sigkill_mid_repair_then_rerun_converges_without_duplicates(seeded, emulator, kill_after_writes):
    url, data = seeded
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance)
        set_faults(emulator, latency_ms=40)
        child = subprocess.Popen([sys.executable, "-c", REPAIR_SCRIPT], env=dict(os.environ))
        wait_until(lambda: writes_started(url) >= kill_after_writes or child.poll() is not None, timeout=120, what=f"{kill_after_writes} repair writes")
        assert child.poll() is None, "repair finished before it could be killed; slow the emulator further"
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
        set_faults(emulator, latency_ms=0)
        rerun = run_job("repair_catalog", REPAIR_ARCHIVE, instance=instance)
        assert rerun.success
        assert drift_after(instance) == 0
    assert_clean(emulator, data)


def test_mass_drift_breaker_refuses_to_repair_and_fails_its_check(seeded, emulator):
    url, _ = seeded
    # 300 more products missing in Stripe: about (90 + 300) / (2,372 + 300) products and prices, > 10%.
    upsert_products(make_engine(url), [CatalogProduct(id=f"bulk_{i:04d}", name=f"Bulk {i}") for i in range(300)])
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance)
        repair = run_job("repair_catalog", REPAIR_ARCHIVE, instance=instance)
        assert not repair.success  # red in the UI, not a green run that wrote nothing
        checks = {e.check_name: e for e in repair.get_asset_check_evaluations()}
        assert not checks["mass_drift_breaker"].passed
        assert "refusing to auto-repair" in checks["mass_drift_breaker"].description
        assert "recon-pipeline repair --override-breaker" in checks["mass_drift_breaker"].description
        assert drift_after(instance) > 300  # nothing was written
        override = {"ops": {"catalog_repair": {"config": {"orphan_policy": "archive", "override_breaker": True}}}}
        assert run_job("repair_catalog", override, instance=instance).success
        assert drift_after(instance) == 0


def test_a_product_stripe_refuses_goes_to_dead_letter_and_the_rest_is_repaired(seeded, emulator):
    url, _ = seeded
    engine = make_engine(url)
    # A product whose name drifted, and whose every write Stripe refuses.
    upsert_products(engine, [CatalogProduct(id="sku_refused", name="Refused")])
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [{"id": "sku_refused", "name": "Stale", "created": 1_700_000_000}]}).raise_for_status()
    set_faults(emulator, refuse_paths=["/v1/products/sku_refused"])
    with dg.DagsterInstance.get() as instance:
        run_job("reconcile_catalog", instance=instance)
        repair = run_job("repair_catalog", REPAIR_ARCHIVE, instance=instance)
        assert repair.success  # one bad product does not sink the run
        checks = {e.check_name: e for e in repair.get_asset_check_evaluations()}
        assert not checks["dead_letters_empty"].passed
        assert checks["dead_letters_empty"].severity == dg.AssetCheckSeverity.WARN
        with engine.connect() as conn:
            letters = conn.execute(select(dead_letter.c.product_id, dead_letter.c.reason, dead_letter.c.attempts)).all()
        assert [letter.product_id for letter in letters] == ["sku_refused"]
        assert "400 resource_refused" in letters[0].reason
        assert letters[0].attempts == 1  # a 400 is not retried: sent once, as the summary's retries 0 says
        # Everything else was repaired: only the refused product still drifts.
        drift = run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift")
        assert set(drift.loc[drift["kind"] != PRICE_ORPHAN_IN_STRIPE, "product_id"]) == {"sku_refused"}
    # Stripe takes it now: the replay resolves the letter and records by which replay and what it wrote.
    set_faults(emulator, refuse_paths=[])
    [replayed] = replay_dead_letters(Catalog.open(url), StripeGateway("sk_test_replay", emulator.url))
    assert replayed.resolved
    with engine.connect() as conn:
        letter = conn.execute(select(dead_letter)).one()
        replay_id = letter.resolution.split(":")[0]
        written = conn.execute(select(sync_ledger.c.path, sync_ledger.c.status).where(sync_ledger.c.run_id == replay_id)).all()
    assert letter.resolved_at is not None and letter.resolution.startswith("replay-") and "update_product (name): applied" in letter.resolution
    assert ("/v1/products/sku_refused", 200) in written and letter.attempts == 1 and "400 resource_refused" in letter.reason
