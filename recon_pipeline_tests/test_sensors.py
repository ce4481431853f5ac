"""Sensors evaluated with Dagster's sensor test context against a real instance."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from recon_pipeline.catalog import make_engine
from recon_pipeline.definitions import build_defs
from recon_pipeline.defs.alerts import alert_sensor
from recon_pipeline.defs.repair import drift_repair_sensor
from recon_pipeline.defs.resources import AlertsResource
from recon_pipeline.demo import plan_demo, seed_demo
from recon_pipeline.demo_report import run_job
from recon_pipeline.testing import AlertReceiver


@pytest.fixture
def drifted_instance(tmp_path: Path, emulator, dagster_home, monkeypatch):
    """An instance in which reconcile_catalog just ran on a catalog with the demo's drift."""
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    seed_demo(make_engine(url), emulator.url, plan_demo(n_products=1000, seed=3))
    with dg.DagsterInstance.get() as instance:
        result = run_job("reconcile_catalog", instance=instance)
        yield instance, result


def test_drift_repair_sensor_requests_one_repair_per_drift_materialization(drifted_instance):
    instance, reconcile = drifted_instance
    defs = build_defs()
    context = dg.build_sensor_context(instance=instance, definitions=defs)
    requests = list(drift_repair_sensor(context) or [])
    assert [r.run_key for r in requests] == [f"catalog_drift:{reconcile.run_id}"]
    assert requests[0].job_name in (None, "repair_catalog")
    # The same materialization is not requested twice: the sensor's cursor moved past it.
    again = dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor)
    assert not [r for r in (drift_repair_sensor(again) or []) if isinstance(r, dg.RunRequest)]


def test_alert_sensor_posts_failed_check_and_failed_run_once(drifted_instance):
    instance, reconcile = drifted_instance
    with AlertReceiver() as receiver:
        alerts = AlertsResource(webhook_url=receiver.url, ui_url="http://127.0.0.1:3000")
        context = dg.build_sensor_context(instance=instance, resources={"alerts": alerts})
        alert_sensor(context)
        kinds = sorted((a["kind"], a.get("check")) for a in receiver.received)
        assert kinds == [("asset_check_failed", "drift_rate_below_threshold"), ("run_failed", None)]
        check = next(a for a in receiver.received if a["kind"] == "asset_check_failed")
        assert check["asset"] == "catalog_drift" and check["run_id"] == reconcile.run_id
        assert check["threshold"] == 0.01 and check["value"] > 0.01
        assert check["url"].endswith("/assets/catalog_drift?view=checks")
        # Once per failure: the next evaluation, from the stored cursor, posts nothing new.
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": alerts}))
        assert len(receiver.received) == 2


def test_alert_sensor_without_a_webhook_only_logs(drifted_instance):
    instance, _ = drifted_instance
    context = dg.build_sensor_context(instance=instance, resources={"alerts": AlertsResource(webhook_url="")})
    result = alert_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "checks" in context.cursor
