"""Sensors evaluated with Dagster's sensor test context against a real instance."""

from __future__ import annotations

import json
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from recon_pipeline.catalog import Catalog, make_engine
from recon_pipeline.definitions import build_defs
from recon_pipeline.defs.alerts import alert_sensor
from recon_pipeline.defs.repair import drift_repair_sensor
from recon_pipeline.defs.resources import AlertsResource, ReconPolicy
from recon_pipeline.demo import plan_demo, seed_demo
from recon_pipeline.runs import run_job
from recon_pipeline.testing import AlertReceiver, priced_fixture, seed_priced


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
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources={"policy": ReconPolicy()})
    requests = drift_repair_sensor.evaluate_tick(context).run_requests or []
    assert [r.run_key for r in requests] == [f"catalog_drift:{reconcile.run_id}"]
    assert requests[0].job_name in (None, "repair_catalog")
    # The same materialization is not requested twice: the sensor's cursor moved past it.
    again = dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor, resources={"policy": ReconPolicy()})
    assert not drift_repair_sensor.evaluate_tick(again).run_requests


def test_drift_repair_sensor_skips_drift_that_is_only_a_reported_unmanaged_price(tmp_path: Path, emulator, dagster_home, monkeypatch):
    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    seed_priced(Catalog.open(url), ["sku_1"])
    # In Stripe the same product, and a second price made in the dashboard (no lookup key).
    fixture = priced_fixture("sku_1", "sku_1 v0")
    fixture["prices"].append({"currency": "usd", "unit_amount": 500, "created": 1_700_000_000})
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [fixture]}).raise_for_status()
    with dg.DagsterInstance.get() as instance:
        drift = run_job("reconcile_catalog", instance=instance).asset_value("catalog_drift")
        assert list(drift["kind"]) == ["price_orphan_in_stripe"]
        for policy, wanted in (("report", []), ("archive", [1])):
            context = dg.build_sensor_context(instance=instance, definitions=build_defs(), resources={"policy": ReconPolicy(price_orphan_policy=policy)})
            tick = drift_repair_sensor.evaluate_tick(context)
            assert [1 for _ in tick.run_requests or []] == wanted, (policy, tick.skip_message)


def test_alert_sensor_posts_each_failure_once(drifted_instance):
    instance, reconcile = drifted_instance
    with AlertReceiver() as receiver:
        alerts = AlertsResource(webhook_url=receiver.url, ui_url="http://127.0.0.1:3000")
        context = dg.build_sensor_context(instance=instance, resources={"alerts": alerts})
        alert_sensor(context)
        # The run failed because its blocking drift check failed: one alert, the check's.
        assert [(a["kind"], a.get("check")) for a in receiver.received] == [("asset_check_failed", "drift_rate_below_threshold")]
        [check] = receiver.received
        assert check["asset"] == "catalog_drift" and check["run_id"] == reconcile.run_id
        assert check["threshold"] == 0.01 and check["value"] > 0.01
        assert check["url"].endswith("/assets/catalog_drift?view=checks")
        # Once per failure: the next evaluation, from the stored cursor, posts nothing new.
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": alerts})
        alert_sensor(context)
        assert len(receiver.received) == 1
        # A run failing for another reason is alerted as a run.
        broken = run_job("apply_inbox", {"ops": {"inbox_apply": {"config": {"conflict_policy": "whoever"}}}}, instance=instance)
        assert not broken.success
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor, resources={"alerts": alerts}))
        assert [(a["kind"], a["job"]) for a in receiver.received[1:]] == [("run_failed", "apply_inbox")]
        assert "failed (" in receiver.received[1]["text"] and "): inbox_apply: conflict_policy='whoever' is not one of" in receiver.received[1]["text"]


def test_alert_sensor_without_a_webhook_only_logs(drifted_instance):
    instance, _ = drifted_instance
    context = dg.build_sensor_context(instance=instance, resources={"alerts": AlertsResource(webhook_url="")})
    result = alert_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "checks" in context.cursor


def test_a_fresh_install_is_not_overdue_until_its_first_reconciliation_is_late(dagster_home):
    from recon_pipeline.defs.reconciliation import FRESHNESS_CHECK, freshness_checks_sensor

    with dg.DagsterInstance.get() as instance:
        first = dg.build_sensor_context(instance=instance)
        assert isinstance(freshness_checks_sensor(first), dg.SkipReason)  # just started: nothing is late yet
        three_hours_ago = json.dumps({"since": time.time() - 3 * 3600})
        late = dg.build_sensor_context(instance=instance, cursor=three_hours_ago)
        request = freshness_checks_sensor(late)
        assert isinstance(request, dg.RunRequest) and list(request.asset_check_keys or []) == [FRESHNESS_CHECK]
        # Once per overdue spell: the check has said it; the next tick waits for a reconciliation.
        again = dg.build_sensor_context(instance=instance, cursor=late.cursor)
        assert isinstance(freshness_checks_sensor(again), dg.SkipReason)


def test_the_freshness_arithmetic():
    from recon_pipeline.reconcile.freshness import fresh, overdue

    hour = 3600.0
    assert not overdue(None, watching_since=0, now=hour) and overdue(None, watching_since=0, now=3 * hour)
    assert not overdue(10 * hour, watching_since=0, now=11 * hour) and overdue(10 * hour, watching_since=0, now=12.5 * hour)
    assert fresh(10 * hour, now=11 * hour) and not fresh(None, now=hour) and not fresh(0, now=3 * hour)
