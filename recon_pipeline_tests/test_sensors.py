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
from recon_pipeline.defs.alerts import alert_sensor, run_failure_alert_sensor
from recon_pipeline.defs.repair import drift_repair_sensor
from recon_pipeline.defs.resources import AlertsResource, ReconPolicy
from recon_pipeline.demo import plan_demo, seed_demo
from recon_pipeline.runs import latest_metadata, run_job
from recon_pipeline.testing import AlertReceiver, priced_fixture, seed_priced, sensor_resources


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
    context = dg.build_sensor_context(instance=instance, definitions=defs, resources=sensor_resources(policy=ReconPolicy()))
    requests = drift_repair_sensor.evaluate_tick(context).run_requests or []
    assert [r.run_key for r in requests] == [f"catalog_drift:{reconcile.run_id}"]
    assert requests[0].job_name in (None, "repair_catalog")
    # The same materialization is not requested twice: the sensor's cursor moved past it.
    again = dg.build_sensor_context(instance=instance, definitions=defs, cursor=context.cursor, resources=sensor_resources(policy=ReconPolicy()))
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
            context = dg.build_sensor_context(instance=instance, definitions=build_defs(), resources=sensor_resources(policy=ReconPolicy(price_orphan_policy=policy)))
            tick = drift_repair_sensor.evaluate_tick(context)
            assert [1 for _ in tick.run_requests or []] == wanted, (policy, tick.skip_message)


def test_alert_sensor_posts_each_failure_once(drifted_instance):
    instance, reconcile = drifted_instance
    with AlertReceiver() as receiver:
        alerts = AlertsResource(webhook_url=receiver.url, ui_url="http://127.0.0.1:3000")
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=alerts))
        alert_sensor(context)
        # The run failed because its blocking drift check failed: one alert, the check's.
        assert [(a["kind"], a.get("check")) for a in receiver.received] == [("asset_check_failed", "drift_rate_below_threshold")]
        [check] = receiver.received
        assert check["asset"] == "catalog_drift" and check["run_id"] == reconcile.run_id
        assert check["threshold"] == 0.01 and check["value"] > 0.01
        assert check["url"].endswith("/assets/catalog_drift?view=checks")
        # Once per failure: the next evaluation, from the stored cursor, posts nothing new.
        context = dg.build_sensor_context(instance=instance, cursor=context.cursor, resources=sensor_resources(alerts=alerts))
        alert_sensor(context)
        assert len(receiver.received) == 1


def _run_failure_tick(instance: dg.DagsterInstance, resources: dict, cursor: str | None) -> tuple[dg.SensorExecutionData, str | None]:
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources=resources)
    return run_failure_alert_sensor.evaluate_tick(context), context.cursor


def test_failed_runs_are_alerted_once_by_dagsters_run_failure_sensor(drifted_instance):
    instance, _ = drifted_instance
    with AlertReceiver() as receiver:
        alerts = sensor_resources(alerts=AlertsResource(webhook_url=receiver.url, ui_url="http://127.0.0.1:3000"))
        _, cursor = _run_failure_tick(instance, alerts, None)  # Dagster's sensor starts from now
        assert receiver.received == []
        # A run failing for another reason than its checks is alerted as a run, with the step's reason.
        broken = run_job("apply_inbox", {"ops": {"inbox_apply": {"config": {"conflict_policy": "whoever"}}}}, instance=instance)
        assert not broken.success
        _, cursor = _run_failure_tick(instance, alerts, cursor)
        assert [(a["kind"], a["job"], a["run_id"]) for a in receiver.received] == [("run_failed", "apply_inbox", broken.run_id)]
        assert "): inbox_apply: conflict_policy='whoever' is not one of" in receiver.received[0]["text"]
        # Once: the next tick posts nothing; a run that failed only its blocking check is the check's alert.
        run_job("reconcile_catalog", instance=instance)
        _, cursor = _run_failure_tick(instance, alerts, cursor)
        assert len(receiver.received) == 1


def test_a_webhook_that_does_not_take_a_check_alert_gets_it_next_tick_and_no_tick_sleeps(drifted_instance):
    instance, _ = drifted_instance
    with AlertReceiver(fail_first=1) as receiver:
        alerts = AlertsResource(webhook_url=receiver.url)
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=alerts))
        started = time.monotonic()
        alert_sensor(context)
        assert time.monotonic() - started < 5  # one attempt, no backoff inside the tick
        assert receiver.received == []
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=context.cursor, resources=sensor_resources(alerts=alerts)))
        assert [a.get("check") for a in receiver.received] == ["drift_rate_below_threshold"]


def test_alert_sensor_without_a_webhook_only_logs(drifted_instance):
    instance, _ = drifted_instance
    context = dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=AlertsResource(webhook_url="")))
    result = alert_sensor(context)
    assert isinstance(result, dg.SkipReason)
    assert "RUN_FAILURE" in context.cursor


def test_catalog_drift_freshness_is_dagsters_own_check_and_sensor(tmp_path: Path, emulator, dagster_home, monkeypatch):
    from recon_pipeline.defs.reconciliation import FRESHNESS_CHECK, catalog_drift, drift_freshness_checks, freshness_checks_sensor

    monkeypatch.setenv("RECON_CATALOG_URL", f"sqlite:///{tmp_path / 'catalog.db'}")
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    seed_priced(Catalog.open(f"sqlite:///{tmp_path / 'catalog.db'}"), ["sku_1"])
    defs = build_defs()
    with dg.DagsterInstance.get() as instance:
        # Never evaluated: Dagster's sensor asks for the check, and it fails (never materialized).
        request = freshness_checks_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs)).run_requests
        assert request and list(request[0].asset_check_keys or []) == [FRESHNESS_CHECK]
        checks_only = dg.AssetSelection.checks(FRESHNESS_CHECK)
        first = dg.materialize([dg.AssetSpec(catalog_drift.key), *drift_freshness_checks], selection=checks_only, instance=instance, raise_on_error=False)
        [evaluation] = first.get_asset_check_evaluations()
        assert not evaluation.passed and evaluation.severity == dg.AssetCheckSeverity.ERROR
        # After a reconciliation (drift found or not, catalog_drift was materialized) it passes.
        run_job("reconcile_catalog", instance=instance)
        again = dg.materialize([dg.AssetSpec(catalog_drift.key), *drift_freshness_checks], selection=checks_only, instance=instance)
        assert [e.passed for e in again.get_asset_check_evaluations()] == [True]


def test_a_fresh_install_is_alerted_of_freshness_only_when_its_first_reconciliation_is_late(dagster_home):
    from recon_pipeline.defs.reconciliation import FRESHNESS_CHECK, catalog_drift, drift_freshness_checks

    with AlertReceiver() as receiver, dg.DagsterInstance.get() as instance:
        alerts = AlertsResource(webhook_url=receiver.url)
        checks_only = dg.AssetSelection.checks(FRESHNESS_CHECK)
        dg.materialize([dg.AssetSpec(catalog_drift.key), *drift_freshness_checks], selection=checks_only, instance=instance)
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=alerts))
        alert_sensor(context)
        assert receiver.received == []  # never materialized, and the watch just began
        state = json.loads(context.cursor)
        assert [held["check"] for held in state["held"]] == ["freshness_check"]
        three_hours_ago = json.dumps({**state, "since": time.time() - 3 * 3600})
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=three_hours_ago, resources=sensor_resources(alerts=alerts)))
        assert [(a["kind"], a["check"]) for a in receiver.received] == [("asset_check_failed", "freshness_check")]


def test_the_events_poller_decides_in_no_time_while_stripe_takes_30_s_and_its_run_catches_up(tmp_path: Path, emulator, dagster_home, monkeypatch):
    from recon_pipeline.defs.resources import build_resources
    from recon_pipeline.defs.sync import stripe_events_poller
    from recon_pipeline.settings import Settings
    from recon_pipeline.sync.poller import last_polled

    url = f"sqlite:///{tmp_path / 'catalog.db'}"
    monkeypatch.setenv("RECON_CATALOG_URL", url)
    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    catalog = Catalog.open(url)
    # An edit in the dashboard: an event nobody sent us as a webhook.
    httpx.post(f"{emulator.url}/_emulator/fixtures", json={"products": [priced_fixture("sku_1", "sku_1 v0")]}).raise_for_status()
    httpx.post(f"{emulator.url}/v1/products/sku_1", data={"name": "Renamed in the dashboard"}, auth=("sk_test_emulator", "")).raise_for_status()
    resources = build_resources(Settings.from_env())
    httpx.post(f"{emulator.url}/_emulator/faults", json={"latency_ms": 30_000}).raise_for_status()
    with dg.DagsterInstance.get() as instance:
        ticks = []
        for _ in range(3):
            started = time.monotonic()
            tick = stripe_events_poller.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
            ticks.append(time.monotonic() - started)
        assert max(ticks) < 5, ticks  # Dagster gives a tick 60 s; Stripe takes 30 s a request
        assert [r.tags["recon/poll_due"] for r in tick.run_requests or []] == ["default"]
        # Stripe answers again: the requested run polls from the durable cursor, then applies.
        httpx.post(f"{emulator.url}/_emulator/faults", json={"latency_ms": 0}).raise_for_status()
        result = run_job("apply_inbox", instance=instance)
        assert result.success
        assert latest_metadata(instance, "inbox_apply")["polled_new"] >= 1
        assert set(last_polled(catalog.engine)) == {"default"}
        # Polled just now, nothing waits: the next tick asks for nothing.
        again = stripe_events_poller.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
        assert not again.run_requests and "polled within" in (again.skip_message or "")


def test_two_catalogs_in_one_instance_never_alert_or_repair_each_other(tmp_path: Path, emulator, dagster_home, monkeypatch):
    from recon_pipeline.settings import Settings

    monkeypatch.setenv("STRIPE_API_BASE", emulator.url)
    urls = {name: f"sqlite:///{tmp_path / f'{name}.db'}" for name in ("ours", "theirs")}
    for name, url in urls.items():
        seed_priced(Catalog.open(url), [f"{name}_1", f"{name}_2"])  # not in Stripe: every product drifted

    def runs_of(name: str, job: str, config: dict | None = None) -> dg.ExecuteInProcessResult:
        monkeypatch.setenv("RECON_CATALOG_URL", urls[name])
        return run_job(job, config, instance=instance, settings=Settings.from_env())

    with dg.DagsterInstance.get() as instance, AlertReceiver() as receiver:
        theirs = runs_of("theirs", "reconcile_catalog")
        tagged = instance.get_run_by_id(theirs.run_id)
        assert tagged is not None and "recon/catalog" in tagged.tags  # the catalog resource tagged the run
        monkeypatch.setenv("RECON_CATALOG_URL", urls["ours"])
        resources = sensor_resources(alerts=AlertsResource(webhook_url=receiver.url))
        defs = build_defs()
        # Their drift: no repair requested here, no alert posted here.
        skipped = drift_repair_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=resources))
        assert not skipped.run_requests and "another catalog" in (skipped.skip_message or "")
        checks = dg.build_sensor_context(instance=instance, resources=resources)
        alert_sensor(checks)
        _, failures_cursor = _run_failure_tick(instance, resources, None)
        runs_of("theirs", "apply_inbox", {"ops": {"inbox_apply": {"config": {"conflict_policy": "whoever"}}}})
        monkeypatch.setenv("RECON_CATALOG_URL", urls["ours"])
        _run_failure_tick(instance, resources, failures_cursor)
        assert receiver.received == []
        # Our own drift: one repair, one alert, each about our run.
        ours = runs_of("ours", "reconcile_catalog")
        monkeypatch.setenv("RECON_CATALOG_URL", urls["ours"])
        requested = drift_repair_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs, resources=resources))
        assert [r.run_key for r in requested.run_requests or []] == [f"catalog_drift:{ours.run_id}"]
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=checks.cursor, resources=resources))
        assert [(a["check"], a["run_id"]) for a in receiver.received] == [("drift_rate_below_threshold", ours.run_id)]


def test_a_freshness_failure_from_before_the_first_reconciliation_is_dropped_once_one_comes(dagster_home):
    from recon_pipeline.defs.reconciliation import FRESHNESS_CHECK, catalog_drift, drift_freshness_checks

    with AlertReceiver() as receiver, dg.DagsterInstance.get() as instance:
        checks_only = dg.AssetSelection.checks(FRESHNESS_CHECK)
        dg.materialize([dg.AssetSpec(catalog_drift.key), *drift_freshness_checks], selection=checks_only, instance=instance)  # fails: never materialized
        instance.report_runless_asset_event(dg.AssetMaterialization(catalog_drift.key))  # the schedule's first reconciliation, before the sensor looked
        context = dg.build_sensor_context(instance=instance, resources=sensor_resources(alerts=AlertsResource(webhook_url=receiver.url)))
        alert_sensor(context)
        three_hours_ago = json.dumps({**json.loads(context.cursor), "since": time.time() - 3 * 3600})
        alert_sensor(dg.build_sensor_context(instance=instance, cursor=three_hours_ago, resources=sensor_resources(alerts=AlertsResource(webhook_url=receiver.url))))
        assert receiver.received == []
